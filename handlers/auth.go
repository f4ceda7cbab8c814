package handlers

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// RequireToken is middleware that admits a request only with the API token, given as
// "Authorization: Bearer T" or Jupyter's "Authorization: token T", or the browser session cookie
// (see Login). Browsers cannot set headers on a websocket, so a websocket upgrade may also carry it
// as ?token=. Cookie-authenticated state-changing requests must also carry the CSRF header.
func RequireToken(log *slog.Logger, token string) func(http.Handler) http.Handler {
	return requireToken(token, `send "Authorization: Bearer <token>"`, func(w http.ResponseWriter, r *http.Request, err error) {
		Error(log, w, r, err)
	})
}

// requireToken is the one credential and CSRF check behind RequireToken and ElyraRequireToken;
// they differ only in how a refusal is written and what it suggests.
func requireToken(token, hint string, fail func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			method := AuthMethod(r, token)
			if method == AuthNone {
				w.Header().Set("WWW-Authenticate", `Bearer realm="kfbridge"`)
				fail(w, r, fmt.Errorf("%w: missing or wrong API token (%s)", errUnauthorized, hint))
				return
			}
			if !CSRFOK(r, token, method) {
				fail(w, r, fmt.Errorf("%w: missing or wrong %s header on a cookie-authenticated %s", errForbidden, CSRFHeader, r.Method))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// OriginChecker decides which browser origins may open websockets: the server's own origin, plus an
// explicit allow-list (e.g. the JupyterLab origin). Requests without an Origin header come from
// non-browser clients, which cannot be driven by a foreign page, and are allowed.
type OriginChecker struct {
	Allowed []string // exact origins, e.g. "https://jupyter.example.com"
}

// Check reports whether r's Origin may open a websocket.
func (o OriginChecker) Check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range o.Allowed {
		if a == "*" || strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	return false
}
