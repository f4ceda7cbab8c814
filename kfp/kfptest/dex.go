package kfptest

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// DexOptions configure the fake Dex + authservice in front of the API. An API request without a
// valid session (or bearer token) is redirected to /dex/auth, like oidc-authservice does; the
// login ends at /authservice/oidc/callback, which sets the session cookie and redirects back.
type DexOptions struct {
	// Users maps login (email) to password, for every connector.
	Users map[string]string
	// Connectors offered, e.g. {"local"} or {"local", "ldap"}; with more than one, /dex/auth shows
	// a chooser page. Default {"local"}.
	Connectors []string
	// Approval adds Dex's grant-approval page after the password form.
	Approval bool
	// CookieName is the session cookie; default "authservice_session" ("oauth2_proxy_kubeflow"
	// with OAuth2Proxy).
	CookieName string
	// OAuth2Proxy behaves like Kubeflow 1.9+'s oauth2-proxy instead of oidc-authservice: the
	// flow starts at /oauth2/start?rd=<original path> and ends at /oauth2/callback.
	OAuth2Proxy bool
	// SignInPage (with OAuth2Proxy) answers unauthenticated requests with oauth2-proxy's 403 HTML
	// sign-in page instead of a redirect; the page links to /oauth2/start.
	SignInPage bool
}

type dexState struct {
	opts DexOptions

	mu      sync.Mutex
	pending map[string]string // state -> original URL
	codes   map[string]bool
	logins  map[string]int // connector -> successful logins
}

func newDexState(o DexOptions) *dexState {
	if len(o.Connectors) == 0 {
		o.Connectors = []string{"local"}
	}
	if o.CookieName == "" {
		o.CookieName = "authservice_session"
		if o.OAuth2Proxy {
			o.CookieName = "oauth2_proxy_kubeflow"
		}
	}
	return &dexState{opts: o, pending: map[string]string{}, codes: map[string]bool{}, logins: map[string]int{}}
}

// DexLogins reports how many logins succeeded through the connector.
func (s *Server) DexLogins(connector string) int {
	if s.dex == nil {
		return 0
	}
	s.dex.mu.Lock()
	defer s.dex.mu.Unlock()
	return s.dex.logins[connector]
}

// redirectToLogin answers an unauthenticated API request the way oidc-authservice does.
func (s *Server) redirectToLogin(w http.ResponseWriter, r *http.Request) {
	if s.dex.opts.OAuth2Proxy {
		start := "/oauth2/start?rd=" + url.QueryEscape(r.URL.RequestURI())
		if s.dex.opts.SignInPage {
			writeHTML(w, http.StatusForbidden, `<html><body><form action="`+html.EscapeString(start)+`"><button>Sign in</button></form></body></html>`)
			return
		}
		http.Redirect(w, r, start, http.StatusFound)
		return
	}
	s.startDexFlow(w, r, r.URL.RequestURI(), "/authservice/oidc/callback")
}

// startDexFlow remembers where to return and sends the browser to Dex.
func (s *Server) startDexFlow(w http.ResponseWriter, r *http.Request, orig, callback string) {
	state := newID()
	s.dex.mu.Lock()
	s.dex.pending[state] = orig
	s.dex.mu.Unlock()
	q := url.Values{"client_id": {"kubeflow-oidc-authservice"}, "redirect_uri": {callback},
		"response_type": {"code"}, "scope": {"openid profile email groups"}, "state": {state}}
	http.Redirect(w, r, "/dex/auth?"+q.Encode(), http.StatusFound)
}

func (s *Server) serveDex(w http.ResponseWriter, r *http.Request) {
	d := s.dex
	p := r.URL.Path
	state := r.URL.Query().Get("state")
	switch {
	case p == "/dex/auth":
		if len(d.opts.Connectors) == 1 {
			http.Redirect(w, r, "/dex/auth/"+d.opts.Connectors[0]+"?"+r.URL.RawQuery, http.StatusFound)
			return
		}
		var links strings.Builder
		for _, c := range d.opts.Connectors {
			fmt.Fprintf(&links, `<a href="/dex/auth/%s?%s">Log in with %s</a>`, c, html.EscapeString(r.URL.RawQuery), c)
		}
		writeHTML(w, http.StatusOK, "<html><body>"+links.String()+"</body></html>")
	case strings.HasPrefix(p, "/dex/auth/") && strings.HasSuffix(p, "/login"):
		conn := strings.TrimSuffix(strings.TrimPrefix(p, "/dex/auth/"), "/login")
		if !d.hasConnector(conn) {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodGet {
			writeHTML(w, http.StatusOK, loginForm(""))
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		login, pass := r.PostForm.Get("login"), r.PostForm.Get("password")
		want, ok := d.opts.Users[login]
		if !ok || want != pass {
			// Dex re-renders the form with 200 on bad credentials.
			writeHTML(w, http.StatusOK, loginForm("Invalid Email Address and password."))
			return
		}
		d.mu.Lock()
		d.logins[conn]++
		d.mu.Unlock()
		if d.opts.Approval {
			http.Redirect(w, r, "/dex/approval?req="+url.QueryEscape(state)+"&state="+url.QueryEscape(state), http.StatusSeeOther)
			return
		}
		s.dexCallbackRedirect(w, r, state)
	case strings.HasPrefix(p, "/dex/auth/"):
		conn := strings.TrimPrefix(p, "/dex/auth/")
		if !d.hasConnector(conn) {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, "/dex/auth/"+conn+"/login?back=&state="+url.QueryEscape(state), http.StatusFound)
	case p == "/dex/approval":
		if r.Method == http.MethodGet {
			writeHTML(w, http.StatusOK, `<html><body><form method="post"><button name="approval" value="approve">Grant Access</button></form></body></html>`)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("approval") != "approve" {
			writeHTML(w, http.StatusForbidden, "<html><body>Access denied</body></html>")
			return
		}
		s.dexCallbackRedirect(w, r, r.URL.Query().Get("req"))
	case p == "/oauth2/start" && d.opts.OAuth2Proxy:
		rd := r.URL.Query().Get("rd")
		if rd == "" || !strings.HasPrefix(rd, "/") {
			rd = "/"
		}
		s.startDexFlow(w, r, rd, "/oauth2/callback")
	case p == "/authservice/oidc/callback" || (p == "/oauth2/callback" && d.opts.OAuth2Proxy):
		code := r.URL.Query().Get("code")
		d.mu.Lock()
		okCode := d.codes[code]
		delete(d.codes, code)
		orig := d.pending[state]
		delete(d.pending, state)
		d.mu.Unlock()
		if !okCode || orig == "" {
			writeHTML(w, http.StatusUnauthorized, "<html><body>invalid OIDC callback</body></html>")
			return
		}
		session := newID()
		s.mu.Lock()
		s.sessions[session] = true
		s.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: d.opts.CookieName, Value: session, Path: "/", HttpOnly: true})
		http.Redirect(w, r, orig, http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) dexCallbackRedirect(w http.ResponseWriter, r *http.Request, state string) {
	code := newID()
	s.dex.mu.Lock()
	s.dex.codes[code] = true
	s.dex.mu.Unlock()
	cb := "/authservice/oidc/callback"
	if s.dex.opts.OAuth2Proxy {
		cb = "/oauth2/callback"
	}
	http.Redirect(w, r, cb+"?code="+code+"&state="+url.QueryEscape(state), http.StatusSeeOther)
}

func (d *dexState) hasConnector(c string) bool {
	for _, x := range d.opts.Connectors {
		if x == c {
			return true
		}
	}
	return false
}

func loginForm(errMsg string) string {
	e := ""
	if errMsg != "" {
		e = `<div class="dex-error-box">` + html.EscapeString(errMsg) + `</div>`
	}
	return `<html><body>` + e + `<form method="post" action=""><input name="login"><input name="password" type="password"><button type="submit">Login</button></form></body></html>`
}

func writeHTML(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
