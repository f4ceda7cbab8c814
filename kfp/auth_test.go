package kfp_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

// bearerTokens lists the bearer tokens the fake received, in order.
func bearerTokens(s *kfptest.Server) []string {
	var out []string
	for _, r := range s.Requests() {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			out = append(out, tok)
		}
	}
	return out
}

func TestServiceAccountTokenRotation(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("token-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := kfptest.NewServer(t, kfptest.Options{Tokens: []string{"token-one"}})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1, Auth: kfp.Auth{Type: kfp.AuthServiceAccountToken, TokenPath: tokFile}})
	ctx := context.Background()
	if _, err := c.Healthz(ctx); err != nil {
		t.Fatalf("first request: %v", err)
	}
	// The kubelet rotates the projected token: the old one stops working at once.
	if err := os.WriteFile(tokFile, []byte("token-two"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.SetTokens("token-two")
	if _, err := c.Healthz(ctx); err != nil {
		t.Fatalf("request after rotation: %v", err)
	}
	got := bearerTokens(s)
	if len(got) != 2 || got[0] != "token-one" || got[1] != "token-two" {
		t.Fatalf("tokens sent = %q", got)
	}
	noUserIDHeader(t, s)
}

func TestServiceAccountTokenFromEnvAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("env-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(kfp.TokenPathEnv, tokFile)
	s := kfptest.NewServer(t, kfptest.Options{Tokens: []string{"env-token"}})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthServiceAccountToken}})
	if _, err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("token from %s: %v", kfp.TokenPathEnv, err)
	}
	if err := os.Remove(tokFile); err != nil {
		t.Fatal(err)
	}
	before := len(s.Requests())
	_, err := c.Healthz(context.Background())
	if !errors.Is(err, kfp.ErrUnauthorized) || !strings.Contains(err.Error(), tokFile) {
		t.Fatalf("missing token file: %v", err)
	}
	if len(s.Requests()) != before {
		t.Fatal("a request was sent without credentials")
	}
}

func TestBearerTokenAndWrongToken(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{Tokens: []string{"good"}})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthBearerToken, Token: "good"}})
	if _, err := c.Healthz(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthBearerToken, Token: "bad"}})
	_, err := bad.Healthz(context.Background())
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUnauthorized) || !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Attempts != 1 {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestDexLogin(t *testing.T) {
	cases := []struct {
		name       string
		auth       kfp.AuthType
		connectors []string
		approval   bool
		connector  string
		oauth2     bool
		signIn     bool
	}{
		{"static-passwords", kfp.AuthDexStaticPasswords, []string{"local"}, false, "local", false, false},
		{"static-with-approval-and-chooser", kfp.AuthDexStaticPasswords, []string{"local", "ldap"}, true, "local", false, false},
		{"ldap", kfp.AuthDexLDAP, []string{"local", "ldap"}, false, "ldap", false, false},
		{"oauth2-proxy-redirect", kfp.AuthDexStaticPasswords, []string{"local"}, false, "local", true, false},
		{"oauth2-proxy-sign-in-page", kfp.AuthDexLDAP, []string{"local", "ldap"}, false, "ldap", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := kfptest.NewServer(t, kfptest.Options{PathPrefix: "/pipeline", Dex: &kfptest.DexOptions{
				Users: map[string]string{"user@example.com": "12341234"}, Connectors: tc.connectors, Approval: tc.approval,
				OAuth2Proxy: tc.oauth2, SignInPage: tc.signIn}})
			c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1,
				Auth: kfp.Auth{Type: tc.auth, Username: "user@example.com", Password: "12341234"}})
			ctx := context.Background()
			if _, err := c.EnsureExperiment(ctx, "e", ""); err != nil {
				t.Fatalf("first call: %v", err)
			}
			if n := s.DexLogins(tc.connector); n != 1 {
				t.Fatalf("%s logins = %d", tc.connector, n)
			}
			// The session is reused...
			if _, err := c.Healthz(ctx); err != nil {
				t.Fatal(err)
			}
			if n := s.DexLogins(tc.connector); n != 1 {
				t.Fatalf("logged in again with a valid session: %d", n)
			}
			// ...and renewed once it expires (the proxy redirects to Dex again).
			s.ExpireSessions()
			if _, err := c.Healthz(ctx); err != nil {
				t.Fatalf("after session expiry: %v", err)
			}
			if n := s.DexLogins(tc.connector); n != 2 {
				t.Fatalf("logins after expiry = %d", n)
			}
			wantCookie := kfp.CookieAuthservice
			if tc.oauth2 {
				wantCookie = kfp.CookieOAuth2Proxy
			}
			last := s.Requests()[len(s.Requests())-1]
			if ck, err := (&http.Request{Header: last.Header}).Cookie(wantCookie); err != nil || ck.Value == "" {
				t.Fatalf("API request without %s cookie: %v", wantCookie, last.Header)
			}
			noUserIDHeader(t, s)
		})
	}
}

func TestDexWrongPassword(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{PathPrefix: "/pipeline", Dex: &kfptest.DexOptions{Users: map[string]string{"u": "right-password"}}})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthDexStaticPasswords, Username: "u", Password: "wrong"}})
	_, err := c.Healthz(context.Background())
	if !errors.Is(err, kfp.ErrUnauthorized) || !strings.Contains(err.Error(), "rejected the login") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestNoAuthAgainstDexIsClearError(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{PathPrefix: "/pipeline", Dex: &kfptest.DexOptions{Users: map[string]string{"u": "p"}}})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1})
	_, err := c.Healthz(context.Background())
	if !errors.Is(err, kfp.ErrUnauthorized) || !strings.Contains(err.Error(), "/dex/auth") {
		t.Fatalf("unauthenticated call behind Dex: %v", err)
	}
}

func TestSessionCookie(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{PathPrefix: "/pipeline", Dex: &kfptest.DexOptions{Users: map[string]string{"u": "p"}}})
	// Log in once with a scripted client to obtain a real session value, as a user would copy it
	// from the browser.
	login := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthDexStaticPasswords, Username: "u", Password: "p"}})
	if _, err := login.Healthz(context.Background()); err != nil {
		t.Fatal(err)
	}
	var session string
	for _, r := range s.Requests() {
		for _, ck := range (&http.Request{Header: r.Header}).Cookies() {
			if ck.Name == kfp.CookieAuthservice {
				session = ck.Value
			}
		}
	}
	if session == "" {
		t.Fatal("no session cookie seen")
	}
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: kfp.Auth{Type: kfp.AuthSessionCookie, Token: kfp.CookieAuthservice + "=" + session}})
	if _, err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("with copied session cookie: %v", err)
	}
}

func TestCABundle(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{TLS: true})
	ca := s.CAFile(t.TempDir())
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1, CABundle: ca})
	if _, err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("with CA bundle: %v", err)
	}
	// Without the bundle the certificate is unknown: a clear, non-retried error.
	c2 := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1})
	before := len(s.Requests())
	_, err := c2.Healthz(context.Background())
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUpstream) || !errors.As(err, &ae) || ae.Attempts != 1 || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without CA bundle: %v", err)
	}
	if len(s.Requests()) != before {
		t.Fatal("TLS failure reached the handler")
	}
}

func TestParseAuthType(t *testing.T) {
	for in, want := range map[string]kfp.AuthType{
		"":                                 kfp.AuthNone,
		"NO_AUTHENTICATION":                kfp.AuthNone,
		"KUBERNETES_SERVICE_ACCOUNT_TOKEN": kfp.AuthServiceAccountToken,
		"KUBERNETES_SERVICEACCOUNT_TOKEN":  kfp.AuthServiceAccountToken,
		"EXISTING_BEARER_TOKEN":            kfp.AuthBearerToken,
		"DEX_STATIC_PASSWORDS":             kfp.AuthDexStaticPasswords,
		"DEX_LEGACY":                       kfp.AuthDexStaticPasswords,
		"dex_ldap":                         kfp.AuthDexLDAP,
		"EXISTING_SESSION_COOKIE":          kfp.AuthSessionCookie,
	} {
		got, err := kfp.ParseAuthType(in)
		if err != nil || got != want {
			t.Errorf("ParseAuthType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := kfp.ParseAuthType("KERBEROS"); !errors.Is(err, kfp.ErrInvalid) {
		t.Errorf("unknown auth type: %v", err)
	}
}

func TestElyraAuth(t *testing.T) {
	cases := []struct {
		typ, user, pass string
		want            kfp.Auth
	}{
		{"EXISTING_BEARER_TOKEN", "", "tok", kfp.Auth{Type: kfp.AuthBearerToken, Token: "tok"}},
		{"DEX_LDAP", "u", "p", kfp.Auth{Type: kfp.AuthDexLDAP, Username: "u", Password: "p"}},
		{"DEX_STATIC_PASSWORDS", "u", "p", kfp.Auth{Type: kfp.AuthDexStaticPasswords, Username: "u", Password: "p"}},
		{"KUBERNETES_SERVICE_ACCOUNT_TOKEN", "ignored", "ignored", kfp.Auth{Type: kfp.AuthServiceAccountToken}},
		{"EXISTING_SESSION_COOKIE", "oauth2_proxy_kubeflow", "abc", kfp.Auth{Type: kfp.AuthSessionCookie, Token: "abc", CookieName: "oauth2_proxy_kubeflow"}},
		{"NO_AUTHENTICATION", "u", "p", kfp.Auth{Type: kfp.AuthNone}},
	}
	for _, tc := range cases {
		got, err := kfp.ElyraAuth(tc.typ, tc.user, tc.pass)
		if err != nil || got != tc.want {
			t.Errorf("ElyraAuth(%s) = %+v, %v", tc.typ, got, err)
		}
	}
	// A token configured this way authenticates.
	s := kfptest.NewServer(t, kfptest.Options{Tokens: []string{"tok"}})
	a, _ := kfp.ElyraAuth("EXISTING_BEARER_TOKEN", "", "tok")
	if _, err := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Auth: a}).Healthz(context.Background()); err != nil {
		t.Fatal(err)
	}
}
