package web

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestHandlerServesAssets(t *testing.T) {
	h := Handler(Options{FrameAncestors: []string{"https://jupyter.example.com/"}})
	index, _ := static.ReadFile("static/index.html")

	rec := get(t, h, "GET", "/", nil)
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), index) {
		t.Fatalf("GET /: %d, body is not index.html", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'self' https://jupyter.example.com") {
		t.Errorf("CSP %q", csp)
	}
	if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("ETag") == "" {
		t.Errorf("caching headers: %v", rec.Header())
	}

	etag := rec.Header().Get("ETag")
	if rec := get(t, h, "GET", "/", map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("revalidation: %d, want 304 with no body", rec.Code)
	}

	rec = get(t, h, "GET", "/logview.js", map[string]string{"Accept-Encoding": "gzip, br"})
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("gzip asset: %d %v", rec.Code, rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	want, _ := static.ReadFile("static/logview.js")
	if !bytes.Equal(plain, want) {
		t.Error("gzip body does not decode to the asset")
	}

	if rec := get(t, h, "GET", "/runs", nil); rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), index) {
		t.Errorf("top-level route without extension: %d, want index.html", rec.Code)
	}
	for _, p := range []string{"/nope.js", "/a/b", "/static/index.html"} {
		if rec := get(t, h, "GET", p, nil); rec.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
	if rec := get(t, h, "POST", "/", nil); rec.Code != 405 {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
	if rec := get(t, h, "HEAD", "/app.js", nil); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d len %d", rec.Code, rec.Body.Len())
	}
}

// Every URL the UI uses must be relative, or it breaks under a proxy prefix such as
// /user/alice/proxy/8765/.
func TestEveryURLIsRelative(t *testing.T) {
	absolute := regexp.MustCompile(`(?:src|href|action)="/|(?:fetch|WebSocket|URL|request|getJSON|postJSON)\(\s*['"\x60]/|['"\x60]/api/`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".html")) {
			return err
		}
		b, _ := static.ReadFile(p)
		for i, line := range strings.Split(string(b), "\n") {
			if absolute.MatchString(line) {
				t.Errorf("%s:%d uses an absolute URL: %s", p, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// colors.css must hold the 256-colour palette the ANSI renderer's classes refer to: 16 base colours,
// the 6x6x6 cube (levels 0, 95, 135, …, 255) and 24 grays (8, 18, …, 238), each as .fN and .bN.
func TestColoursCSS(t *testing.T) {
	b, err := static.ReadFile("static/colors.css")
	if err != nil {
		t.Fatal(err)
	}
	css := string(b)
	base := []string{"#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
		"#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"}
	levels := []int{0, 95, 135, 175, 215, 255}
	want := append([]string(nil), base...)
	for r := 0; r < 6; r++ {
		for g := 0; g < 6; g++ {
			for b := 0; b < 6; b++ {
				want = append(want, fmt.Sprintf("rgb(%d, %d, %d)", levels[r], levels[g], levels[b]))
			}
		}
	}
	for i := 0; i < 24; i++ {
		v := 8 + 10*i
		want = append(want, fmt.Sprintf("rgb(%d, %d, %d)", v, v, v))
	}
	for i, c := range want {
		for _, rule := range []string{fmt.Sprintf(".f%d{color:%s}", i, c), fmt.Sprintf(".b%d{background-color:%s}", i, c)} {
			if !strings.Contains(css, rule) {
				t.Errorf("colors.css lacks %s", rule)
			}
		}
	}
}
