package kfp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
)

// AuthType names how the client authenticates, with Elyra's runtime-config names.
type AuthType string

// Auth types. The first five are Elyra's auth_type values; AuthSessionCookie is kfbridge's for a
// session cookie the user copied from the browser.
const (
	AuthNone                AuthType = "NO_AUTHENTICATION"
	AuthServiceAccountToken AuthType = "KUBERNETES_SERVICE_ACCOUNT_TOKEN"
	AuthBearerToken         AuthType = "EXISTING_BEARER_TOKEN"
	AuthDexStaticPasswords  AuthType = "DEX_STATIC_PASSWORDS"
	AuthDexLDAP             AuthType = "DEX_LDAP"
	AuthSessionCookie       AuthType = "EXISTING_SESSION_COOKIE"
)

// Environment and defaults for the projected KFP service-account token, as the KFP SDK uses them.
const (
	TokenPathEnv     = "KF_PIPELINES_SA_TOKEN_PATH"
	DefaultTokenPath = "/var/run/secrets/kubeflow/pipelines/token"
	// CABundleEnv names a CA bundle file when Options.CABundle is empty (Elyra's variable).
	CABundleEnv = "KF_PIPELINES_SSL_SA_CERTS"
)

// Session cookie names of the two Kubeflow auth proxies.
const (
	CookieAuthservice = "authservice_session"
	CookieOAuth2Proxy = "oauth2_proxy_kubeflow"
)

// ParseAuthType accepts Elyra's names (and its older spellings) case-insensitively; "" means none.
func ParseAuthType(s string) (AuthType, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "NO_AUTHENTICATION", "NONE":
		return AuthNone, nil
	case "KUBERNETES_SERVICE_ACCOUNT_TOKEN", "KUBERNETES_SERVICEACCOUNT_TOKEN":
		return AuthServiceAccountToken, nil
	case "EXISTING_BEARER_TOKEN":
		return AuthBearerToken, nil
	case "DEX_STATIC_PASSWORDS", "DEX_LEGACY":
		// DEX_LEGACY was Elyra's pre-3.2 form of the same scripted login.
		return AuthDexStaticPasswords, nil
	case "DEX_LDAP":
		return AuthDexLDAP, nil
	case "EXISTING_SESSION_COOKIE":
		return AuthSessionCookie, nil
	}
	return "", fmt.Errorf("kfp: unknown auth type %q: %w", s, ErrInvalid)
}

// Auth configures authentication.
type Auth struct {
	Type AuthType
	// TokenPath is the service-account token file (AuthServiceAccountToken); default $KF_PIPELINES_SA_TOKEN_PATH,
	// else DefaultTokenPath. It is re-read on every request, so kubelet rotation is picked up.
	TokenPath string
	// Token is the bearer token (AuthBearerToken) or the cookie value (AuthSessionCookie).
	Token string
	// CookieName is the session cookie's name (AuthSessionCookie); default authservice_session.
	// A value "name=value" in Token is also accepted.
	CookieName string
	// Username and Password log in to Dex (AuthDex*).
	Username string
	Password string
}

// ElyraAuth maps the auth fields of an Elyra KFP runtime configuration (auth_type, api_username,
// api_password) to Auth: api_password is the token for EXISTING_BEARER_TOKEN, the password for
// the Dex types, and the cookie ("name=value", or the value with api_username as the name) for
// EXISTING_SESSION_COOKIE. The service-account token path comes from the environment.
func ElyraAuth(authType, apiUsername, apiPassword string) (Auth, error) {
	t, err := ParseAuthType(authType)
	if err != nil {
		return Auth{}, err
	}
	a := Auth{Type: t}
	switch t {
	case AuthBearerToken:
		a.Token = apiPassword
	case AuthDexStaticPasswords, AuthDexLDAP:
		a.Username, a.Password = apiUsername, apiPassword
	case AuthSessionCookie:
		a.Token, a.CookieName = apiPassword, apiUsername
	}
	return a, nil
}

// authenticator decorates requests with credentials.
type authenticator interface {
	// apply adds credentials to an API request.
	apply(ctx context.Context, req *http.Request) error
	// renew is called after KFP answered 401 or redirected to a login page; it reports whether a
	// retry with fresh credentials can help.
	renew(ctx context.Context) (bool, error)
}

func newAuthenticator(a Auth, base *url.URL, rt http.RoundTripper) (authenticator, error) {
	t := a.Type
	if t == "" {
		t = AuthNone
	}
	switch t {
	case AuthNone:
		return noAuth{}, nil
	case AuthServiceAccountToken:
		p := a.TokenPath
		if p == "" {
			p = os.Getenv(TokenPathEnv)
		}
		if p == "" {
			p = DefaultTokenPath
		}
		return &tokenFileAuth{path: p}, nil
	case AuthBearerToken:
		if strings.TrimSpace(a.Token) == "" {
			return nil, fmt.Errorf("kfp: auth %s: empty token: %w", t, ErrInvalid)
		}
		return staticBearer(strings.TrimSpace(a.Token)), nil
	case AuthSessionCookie:
		name, value := a.CookieName, strings.TrimSpace(a.Token)
		if n, v, ok := strings.Cut(value, "="); ok && name == "" {
			name, value = n, v
		}
		if name == "" {
			name = CookieAuthservice
		}
		if value == "" {
			return nil, fmt.Errorf("kfp: auth %s: empty cookie value: %w", t, ErrInvalid)
		}
		return &cookieAuth{cookie: &http.Cookie{Name: name, Value: value}}, nil
	case AuthDexStaticPasswords, AuthDexLDAP:
		if a.Username == "" || a.Password == "" {
			return nil, fmt.Errorf("kfp: auth %s: username and password are required: %w", t, ErrInvalid)
		}
		connector := "local"
		if t == AuthDexLDAP {
			connector = "ldap"
		}
		return &dexAuth{base: base, rt: rt, user: a.Username, pass: a.Password, connector: connector}, nil
	}
	return nil, fmt.Errorf("kfp: unknown auth type %q: %w", t, ErrInvalid)
}

type noAuth struct{}

func (noAuth) apply(context.Context, *http.Request) error { return nil }
func (noAuth) renew(context.Context) (bool, error)        { return false, nil }

type staticBearer string

func (b staticBearer) apply(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+string(b))
	return nil
}
func (staticBearer) renew(context.Context) (bool, error) { return false, nil }

// tokenFileAuth reads the projected token on every request: the kubelet rewrites the file before
// the old token expires, and a cached copy would start failing after expirationSeconds.
type tokenFileAuth struct{ path string }

func (a *tokenFileAuth) apply(_ context.Context, req *http.Request) error {
	b, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("kfp: read service-account token %s: %w", a.path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("kfp: service-account token file %s is empty: %w", a.path, ErrUnauthorized)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// renew: the file may have been rotated between our read and KFP's check; one more read is cheap.
func (a *tokenFileAuth) renew(context.Context) (bool, error) { return true, nil }

type cookieAuth struct{ cookie *http.Cookie }

func (a *cookieAuth) apply(_ context.Context, req *http.Request) error {
	req.AddCookie(a.cookie)
	return nil
}
func (a *cookieAuth) renew(context.Context) (bool, error) { return false, nil }

// dexAuth scripts the Dex login that the Kubeflow ingress puts in front of KFP and keeps the
// resulting session cookies; it logs in again when the session stops working.
type dexAuth struct {
	base      *url.URL
	rt        http.RoundTripper
	user      string
	pass      string
	connector string // "local" or "ldap"

	mu  sync.Mutex
	jar http.CookieJar
}

func (d *dexAuth) apply(ctx context.Context, req *http.Request) error {
	d.mu.Lock()
	jar := d.jar
	d.mu.Unlock()
	if jar == nil {
		if err := d.login(ctx); err != nil {
			return err
		}
		d.mu.Lock()
		jar = d.jar
		d.mu.Unlock()
	}
	for _, c := range jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	return nil
}

func (d *dexAuth) renew(ctx context.Context) (bool, error) {
	if err := d.login(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Dex paths: the password form /auth/<connector>/login and the connector entry /auth/<connector>.
var (
	loginPathRE     = regexp.MustCompile(`/auth/[^/]+/login$`)
	connectorPathRE = regexp.MustCompile(`/auth/[^/]+$`)
)

// login performs: GET the API endpoint, following redirects (auth proxy -> Dex); pick the
// connector if Dex shows its chooser (/auth); POST login and password to the form; approve if Dex
// asks (/approval); keep the cookies the proxy set on the way back.
func (d *dexAuth) login(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("kfp: dex login: %w", err)
	}
	hc := &http.Client{Transport: d.rt, Jar: jar}
	fail := func(kind error, format string, args ...any) error {
		return &APIError{Op: "dex login", Method: "GET", Endpoint: d.base.String(), Message: fmt.Sprintf(format, args...), Kind: kind}
	}

	resp, err := dexDo(ctx, hc, http.MethodGet, d.base.String(), nil)
	if err != nil {
		return fail(ErrUpstream, "%v", err)
	}
	if (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized) && !loginPathRE.MatchString(resp.Request.URL.Path) {
		// oauth2-proxy may answer with its sign-in page instead of redirecting; the page's
		// button starts the flow at /oauth2/start.
		start := &url.URL{Scheme: d.base.Scheme, Host: d.base.Host, Path: "/oauth2/start", RawQuery: url.Values{"rd": {d.base.RequestURI()}}.Encode()}
		if resp, err = dexDo(ctx, hc, http.MethodGet, start.String(), nil); err != nil {
			return fail(ErrUpstream, "%v", err)
		}
	}
	if resp, err = d.pickConnector(ctx, hc, resp); err != nil {
		return fail(ErrUpstream, "%v", err)
	}
	u := resp.Request.URL
	if !loginPathRE.MatchString(u.Path) {
		return fail(ErrUnauthorized, "%s did not lead to a Dex login form (ended at %s, HTTP %d); is auth_type right?", d.base, u.Redacted(), resp.StatusCode)
	}
	form := url.Values{"login": {d.user}, "password": {d.pass}}
	resp, err = dexDo(ctx, hc, http.MethodPost, u.String(), form)
	if err != nil {
		return fail(ErrUpstream, "%v", err)
	}
	if strings.HasSuffix(resp.Request.URL.Path, "/approval") {
		resp, err = dexDo(ctx, hc, http.MethodPost, resp.Request.URL.String(), url.Values{"approval": {"approve"}})
		if err != nil {
			return fail(ErrUpstream, "%v", err)
		}
	}
	if loginPathRE.MatchString(resp.Request.URL.Path) {
		return fail(ErrUnauthorized, "Dex rejected the login for user %q (wrong username or password?)", d.user)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fail(ErrUnauthorized, "login ended with HTTP %d at %s", resp.StatusCode, resp.Request.URL.Redacted())
	}
	if len(jar.Cookies(d.base)) == 0 {
		return fail(ErrUnauthorized, "login finished at %s but no session cookie was set", resp.Request.URL.Redacted())
	}
	d.jar = jar
	return nil
}

// pickConnector goes from Dex's connector chooser (/auth) or a connector entry (/auth/<id>) to the
// connector's password form.
func (d *dexAuth) pickConnector(ctx context.Context, hc *http.Client, resp *http.Response) (*http.Response, error) {
	u := resp.Request.URL
	switch {
	case strings.HasSuffix(u.Path, "/auth"):
		next := *u
		next.Path += "/" + d.connector
		return dexDo(ctx, hc, http.MethodGet, next.String(), nil)
	case connectorPathRE.MatchString(u.Path) && !loginPathRE.MatchString(u.Path):
		return dexDo(ctx, hc, http.MethodGet, u.String(), nil)
	}
	return resp, nil
}

// dexDo sends one login-flow request (following redirects) and drains the body.
func dexDo(ctx context.Context, hc *http.Client, method, u string, form url.Values) (*http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, nil
}

// tlsConfig loads an optional PEM CA bundle on top of the system roots.
func tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		caFile = os.Getenv(CABundleEnv)
	}
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("kfp: read CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kfp: CA bundle %s holds no PEM certificate: %w", caFile, ErrInvalid)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
