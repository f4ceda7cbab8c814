package handlers

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
)

// Running as jupyter-server-proxy's named server "elyra": Jupyter authenticates the user before it
// proxies a request, but it does not apply its XSRF check to proxied requests (it defers that to
// the proxied application). So when kfbridge trusts the proxy for authentication, it must check
// Jupyter's XSRF token itself: a state-changing request must echo the _xsrf cookie in the
// X-XSRFToken header, which only a page of Jupyter's own origin can read.

// Jupyter's XSRF cookie and header names (tornado's).
const (
	XSRFCookie = "_xsrf"
	XSRFHeader = "X-XSRFToken"
)

// TrustProxyAuth is middleware for a kfbridge that listens on loopback only behind
// jupyter-server-proxy: a request without kfbridge's own credentials is taken as authenticated by
// Jupyter, provided a state-changing one carries Jupyter's XSRF header matching its _xsrf cookie
// (or kfbridge's own CSRF header, which its UI gets from GET api/v1/session).
// Such a request continues with kfbridge's token as its bearer credential, so the handlers and
// RequireToken behind it need no second code path. Requests with kfbridge's own credentials are
// left as they are. With enabled false it changes nothing.
func TrustProxyAuth(log *slog.Logger, token string, enabled bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if !enabled {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if AuthMethod(r, token) != AuthNone {
				next.ServeHTTP(w, r)
				return
			}
			// kfbridge's own CSRF header does as well: only a same-origin page can read it from
			// GET api/v1/session (kfbridge's UI, served under the same prefix, sends it).
			if !safeMethod(r.Method) && !isWebsocket(r) && !JupyterXSRFOK(r) && !equal(r.Header.Get(CSRFHeader), CSRFToken(token)) {
				err := fmt.Errorf("%w: '_xsrf' argument missing from %s: send Jupyter's %s header with the value of its %s cookie", errForbidden, r.Method, XSRFHeader, XSRFCookie)
				if isElyraPath(r.URL.Path) {
					ElyraError(log, w, r, err)
				} else {
					Error(log, w, r, err)
				}
				return
			}
			r2 := r.Clone(r.Context())
			// Jupyter's own "Authorization: token …" (the frontend sends it) is not kfbridge's
			// credential; replace it.
			r2.Header.Set("Authorization", "Bearer "+token)
			next.ServeHTTP(w, r2)
		})
	}
}

// JupyterXSRFOK reports whether r carries Jupyter's XSRF header and it names the same token as the
// _xsrf cookie. Tornado masks the token differently on every page, so both values are unmasked
// before comparing.
func JupyterXSRFOK(r *http.Request) bool {
	h := r.Header.Get(XSRFHeader)
	c, err := r.Cookie(XSRFCookie)
	if h == "" || err != nil || c.Value == "" {
		return false
	}
	a, b := xsrfToken(h), xsrfToken(c.Value)
	return len(a) > 0 && subtle.ConstantTimeCompare(a, b) == 1
}

// xsrfToken unmasks a tornado XSRF value: version 2 is "2|<mask hex>|<masked token hex>|<time>",
// version 1 is the hex token itself; anything else is compared as it is.
func xsrfToken(v string) []byte {
	if strings.HasPrefix(v, "2|") {
		parts := strings.Split(v, "|")
		if len(parts) != 4 {
			return nil
		}
		mask, err1 := hex.DecodeString(parts[1])
		masked, err2 := hex.DecodeString(parts[2])
		if err1 != nil || err2 != nil || len(mask) == 0 {
			return nil
		}
		out := make([]byte, len(masked))
		for i := range masked {
			out[i] = masked[i] ^ mask[i%len(mask)]
		}
		return out
	}
	if b, err := hex.DecodeString(v); err == nil {
		return b
	}
	return []byte(v)
}

// ProxyPaths tells handlers where kfbridge is mounted as the browser sees it, so Location headers
// and links stay right behind a proxy that strips its prefix (jupyter-server-proxy with
// absolute_url False).
type ProxyPaths struct {
	// BaseURL is kfbridge's external root, e.g. "/user/alice/elyra"; "" for the host root.
	BaseURL string
	// TrustForwarded takes the root from X-Forwarded-Prefix (or jupyter-server-proxy's
	// X-Forwarded-Context / X-ProxyContextPath) when the request has one. Only for a kfbridge
	// reachable through the proxy alone, since any client could send the header.
	TrustForwarded bool
}

// prefixRE is what a forwarded prefix may look like: an absolute path of plain segments, so it can
// never turn a Location into another host or smuggle a header.
var prefixRE = regexp.MustCompile(`^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*/?$`)

// Root is kfbridge's external root path for r, without a trailing slash ("" at the host root).
func (p ProxyPaths) Root(r *http.Request) string {
	if p.TrustForwarded {
		for _, h := range []string{"X-Forwarded-Prefix", "X-Forwarded-Context", "X-ProxyContextPath"} {
			if v := r.Header.Get(h); v != "" && prefixRE.MatchString(v) && !strings.Contains(v, "//") {
				return strings.TrimRight(v, "/")
			}
		}
	}
	return strings.TrimRight(p.BaseURL, "/")
}

// JupyterBase is Jupyter's base URL for r, with a trailing slash: the parent of kfbridge's root
// when kfbridge is mounted as a named server ("/user/alice/elyra" -> "/user/alice/"), else "/".
func (p ProxyPaths) JupyterBase(r *http.Request) string {
	root := p.Root(r)
	if i := strings.LastIndex(root, "/"); i >= 0 {
		return root[:i+1]
	}
	return "/"
}

// ElyraBase is the external path of the Elyra API for r: "<root>/elyra" when the request came to
// kfbridge's own /elyra/… routes, "<root>" when a proxy mounted at <base_url>elyra/ stripped that
// part (the same routes are served at kfbridge's root for that case).
func (p ProxyPaths) ElyraBase(r *http.Request) string {
	if r.URL.Path == "/elyra" || strings.HasPrefix(r.URL.Path, "/elyra/") {
		return p.Root(r) + "/elyra"
	}
	return p.Root(r)
}

// isElyraPath reports whether path is one of the Elyra API's, at /elyra/… or at the root.
func isElyraPath(path string) bool {
	path = strings.TrimPrefix(path, "/elyra")
	for _, p := range []string{"/pipeline/", "/metadata/", "/schema/", "/schemaspace", "/contents/properties/", "/elyra.yaml"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// ElyraRequireToken is RequireToken for the Elyra routes: the same credentials and CSRF rule, with
// failures in Elyra's error shape.
func ElyraRequireToken(log *slog.Logger, token string) func(http.Handler) http.Handler {
	return requireToken(token, `send "Authorization: Bearer <token>", or run behind jupyter-server-proxy with --trust-proxy-auth`,
		func(w http.ResponseWriter, r *http.Request, err error) { ElyraError(log, w, r, err) })
}
