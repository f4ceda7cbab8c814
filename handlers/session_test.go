package handlers

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testToken = "s3cret-token"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoginSetsCookieAndRedirectsRelative(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) })
	h := Login(quiet(), testToken)(next)
	for _, c := range []struct{ target, location string }{
		{"/?token=" + testToken, "./"},
		{"/panel.html?token=" + testToken + "&run=r1", "./panel.html?run=r1"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.target, nil))
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("%s: status %d, want 303", c.target, rec.Code)
		}
		if got := rec.Header().Get("Location"); got != c.location {
			t.Errorf("%s: Location %q, want %q (relative, so a proxy prefix survives)", c.target, got, c.location)
		}
		ck := rec.Result().Cookies()
		if len(ck) != 1 || ck[0].Name != SessionCookie || ck[0].Value != SessionValue(testToken) {
			t.Fatalf("%s: cookies %v", c.target, ck)
		}
		if !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "" || ck[0].MaxAge != sessionMaxAge {
			t.Errorf("%s: cookie %+v, want HttpOnly, SameSite=Strict and no Path", c.target, ck[0])
		}
		if strings.Contains(rec.Header().Get("Set-Cookie"), testToken) {
			t.Errorf("the cookie carries the raw token")
		}
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?token=wrong", nil))
	if rec.Code != http.StatusUnauthorized || len(rec.Result().Cookies()) != 0 {
		t.Errorf("wrong token: status %d cookies %v, want 401 and no cookie", rec.Code, rec.Result().Cookies())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app.js", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "page" {
		t.Errorf("no token: status %d body %q, want the page", rec.Code, rec.Body.String())
	}
}

func TestRequireTokenCookieAndCSRF(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := RequireToken(quiet(), testToken)(ok)
	cookie := &http.Cookie{Name: SessionCookie, Value: SessionValue(testToken)}
	otherCookie := &http.Cookie{Name: SessionCookie, Value: SessionValue("another-token")}
	cases := []struct {
		name   string
		method string
		bearer string
		cookie *http.Cookie
		csrf   string
		ws     string // ?token= on a websocket upgrade
		want   int
	}{
		{"no credentials", "GET", "", nil, "", "", 401},
		{"bearer GET", "GET", testToken, nil, "", "", 204},
		{"bearer POST needs no CSRF", "POST", testToken, nil, "", "", 204},
		{"wrong bearer is not rescued by a cookie", "GET", "nope", cookie, "", "", 401},
		{"cookie GET", "GET", "", cookie, "", "", 204},
		{"cookie of another token", "GET", "", otherCookie, "", "", 401},
		{"cookie POST without CSRF", "POST", "", cookie, "", "", 403},
		{"cookie POST with a wrong CSRF", "POST", "", cookie, "abc", "", 403},
		{"cookie POST with CSRF", "POST", "", cookie, CSRFToken(testToken), "", 204},
		{"cookie DELETE with CSRF", "DELETE", "", cookie, CSRFToken(testToken), "", 204},
		{"websocket ?token=", "GET", "", nil, "", testToken, 204},
		{"websocket wrong ?token=", "GET", "", cookie, "", "bad", 401},
	}
	for _, c := range cases {
		target := "/api/v1/runs"
		if c.ws != "" {
			target += "?token=" + c.ws
		}
		r := httptest.NewRequest(c.method, target, nil)
		if c.bearer != "" {
			r.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		if c.cookie != nil {
			r.AddCookie(c.cookie)
		}
		if c.csrf != "" {
			r.Header.Set(CSRFHeader, c.csrf)
		}
		if c.ws != "" {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.want, rec.Body.String())
		}
	}
	if CSRFToken(testToken) == SessionValue(testToken) || CSRFToken(testToken) == CSRFToken("another-token") {
		t.Error("CSRF token must differ from the session value and depend on the token")
	}
}

func TestSessionEndpoint(t *testing.T) {
	h := Session(quiet(), testToken)
	do := func(method, body string, cookie *http.Cookie, csrf string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/api/v1/session", strings.NewReader(body))
		if cookie != nil {
			r.AddCookie(cookie)
		}
		if csrf != "" {
			r.Header.Set(CSRFHeader, csrf)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := do("GET", "", nil, ""); rec.Code != 200 || strings.Contains(rec.Body.String(), "csrf_token") || !strings.Contains(rec.Body.String(), `"authenticated":false`) {
		t.Errorf("anonymous GET: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do("POST", `{"token":"wrong"}`, nil, ""); rec.Code != 401 || len(rec.Result().Cookies()) != 0 {
		t.Errorf("login with a wrong token: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	rec := do("POST", `{"token":"`+testToken+`"}`, nil, "")
	if rec.Code != 200 || len(rec.Result().Cookies()) != 1 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body.String())
	}
	cookie := rec.Result().Cookies()[0]
	if rec := do("GET", "", cookie, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), CSRFToken(testToken)) {
		t.Errorf("logged-in GET should hand out the CSRF token: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do("DELETE", "", cookie, ""); rec.Code != 403 {
		t.Errorf("logout without CSRF: %d, want 403", rec.Code)
	}
	rec = do("DELETE", "", cookie, CSRFToken(testToken))
	if rec.Code != 204 || len(rec.Result().Cookies()) != 1 || rec.Result().Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d cookies %v, want 204 and an expired cookie", rec.Code, rec.Result().Cookies())
	}
}
