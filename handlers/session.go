package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Browser sessions work like Jupyter's: the user opens the URL `kfbridge serve` printed, which
// carries ?token= once; the server answers with an HttpOnly, SameSite=Strict session cookie and a
// redirect to the same page without the token, so the token leaves the address bar and history.
//
// Both the cookie value and the CSRF token are derived from the API token with HMAC, so the server
// keeps no session state, a restart with the same token keeps browsers logged in, and changing the
// token logs every browser out.

// SessionCookie is the name of the browser session cookie.
const SessionCookie = "kfbridge-session"

// CSRFHeader carries the CSRF token on cookie-authenticated state-changing requests. A page from
// another site can make the browser send the cookie, but cannot read the CSRF token (it is only
// served to same-origin JavaScript by GET api/v1/session), so it cannot forge this header.
const CSRFHeader = "X-Kfbridge-CSRF"

// sessionMaxAge keeps a browser logged in for 30 days, as Jupyter's login cookie does.
const sessionMaxAge = 30 * 24 * 3600

// derive returns a purpose-bound secret derived from the API token.
func derive(token, purpose string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("kfbridge/" + purpose + "/v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// SessionValue is the session cookie value for token.
func SessionValue(token string) string { return derive(token, "session") }

// CSRFToken is the CSRF token browsers must echo in CSRFHeader for token.
func CSRFToken(token string) string { return derive(token, "csrf") }

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Auth methods, as AuthMethod reports them.
const (
	AuthNone   = ""
	AuthBearer = "bearer" // Authorization header (CLI, scripts): no CSRF check needed
	AuthQuery  = "query"  // ?token= on a websocket upgrade
	AuthCookie = "cookie" // browser session cookie: state changes need the CSRF header
)

// AuthMethod reports how r proves it holds token: a bearer header, ?token= on a websocket upgrade,
// or the browser session cookie. It returns AuthNone when r is not authenticated.
func AuthMethod(r *http.Request, token string) string {
	if got := bearer(r); got != "" {
		if equal(got, token) {
			return AuthBearer
		}
		return AuthNone // a wrong explicit credential is not rescued by a cookie
	}
	if isWebsocket(r) {
		if got := r.URL.Query().Get("token"); got != "" {
			if equal(got, token) {
				return AuthQuery
			}
			return AuthNone
		}
	}
	if c, err := r.Cookie(SessionCookie); err == nil && equal(c.Value, SessionValue(token)) {
		return AuthCookie
	}
	return AuthNone
}

// Authenticated reports whether r carries the API token in any accepted form (header, websocket
// ?token=, or session cookie). Websocket handlers use it to authenticate the upgrade request; for
// plain requests RequireToken also enforces CSRF protection.
func Authenticated(r *http.Request, token string) bool {
	return AuthMethod(r, token) != AuthNone
}

// safeMethod reports whether a method cannot change state, so it needs no CSRF check.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// CSRFOK reports whether a request authenticated by method passes CSRF protection: only
// cookie-authenticated, state-changing requests need the CSRF header.
func CSRFOK(r *http.Request, token, method string) bool {
	if method != AuthCookie || safeMethod(r.Method) || isWebsocket(r) {
		return true
	}
	return equal(r.Header.Get(CSRFHeader), CSRFToken(token))
}

// setSession sets the session cookie. Without a Path attribute the browser scopes the cookie to the
// directory of the login URL as it saw it, which is the right scope behind a path-prefixing proxy
// (e.g. /user/alice/proxy/8765) that this server cannot see.
func setSession(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	w.Header().Add("Set-Cookie", (&http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		HttpOnly: true,
		Secure:   isHTTPS(r),
		SameSite: http.SameSiteStrictMode,
		MaxAge:   maxAge,
	}).String())
}

func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// Login is middleware for the UI's pages: a GET with a valid ?token= gets the session cookie and a
// redirect to the same page without the token. The redirect is relative, so it stays under whatever
// prefix a proxy mounted kfbridge at. A wrong token gets 401; requests without ?token= pass through
// (the pages themselves are public; the API they call is not).
func Login(log *slog.Logger, token string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if !q.Has("token") || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
				next.ServeHTTP(w, r)
				return
			}
			if !equal(q.Get("token"), token) {
				w.Header().Set("Cache-Control", "no-store")
				Error(log, w, r, fmt.Errorf("%w: wrong token in the login URL", errUnauthorized))
				return
			}
			setSession(w, r, SessionValue(token), sessionMaxAge)
			q.Del("token")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			// Not http.Redirect: it would resolve the reference against the path this server sees,
			// which lacks a proxy's prefix. The browser resolves it against the URL it used.
			w.Header().Set("Location", relativeSelf(r.URL.Path, q))
			w.WriteHeader(http.StatusSeeOther)
		})
	}
}

// relativeSelf is a relative reference to the page at p with query q: "./" for a directory,
// "./name" for a file, so the browser resolves it against the URL it used, prefix included.
func relativeSelf(p string, q url.Values) string {
	ref := "./"
	if !strings.HasSuffix(p, "/") {
		ref = "./" + url.PathEscape(path.Base(p))
	}
	if enc := q.Encode(); enc != "" {
		ref += "?" + enc
	}
	return ref
}

// sessionInfo is the body of GET /api/v1/session.
type sessionInfo struct {
	Authenticated bool   `json:"authenticated"`
	Method        string `json:"method,omitempty"`
	// CSRFToken is what the page must send in the X-Kfbridge-CSRF header on POST/PUT/DELETE.
	CSRFToken  string `json:"csrf_token,omitempty"`
	CSRFHeader string `json:"csrf_header,omitempty"`
}

// Session handles /api/v1/session: GET tells a page whether it is logged in and gives it the CSRF
// token; POST {"token":"…"} logs in (the UI's paste-the-token form) by setting the cookie; DELETE
// logs out. It is mounted outside RequireToken and checks credentials itself.
func Session(log *slog.Logger, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		method := AuthMethod(r, token)
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			info := sessionInfo{Authenticated: method != AuthNone, Method: method}
			if info.Authenticated {
				info.CSRFToken, info.CSRFHeader = CSRFToken(token), CSRFHeader
			}
			encode(w, http.StatusOK, info)
		case http.MethodPost:
			req, err := decode[struct {
				Token string `json:"token"`
			}](w, r)
			if err != nil {
				Error(log, w, r, err)
				return
			}
			if !equal(req.Token, token) {
				Error(log, w, r, fmt.Errorf("%w: wrong token", errUnauthorized))
				return
			}
			setSession(w, r, SessionValue(token), sessionMaxAge)
			encode(w, http.StatusOK, sessionInfo{Authenticated: true, Method: AuthCookie, CSRFToken: CSRFToken(token), CSRFHeader: CSRFHeader})
		case http.MethodDelete:
			if method == AuthNone || !CSRFOK(r, token, method) {
				Error(log, w, r, fmt.Errorf("%w: log out needs the session and the %s header", errForbidden, CSRFHeader))
				return
			}
			setSession(w, r, "", -1)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, POST, DELETE")
			Error(log, w, r, fmt.Errorf("%w: method %s not allowed", errBadRequest, r.Method))
		}
	})
}
