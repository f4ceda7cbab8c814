// Package web is kfbridge's browser UI: plain ES modules, CSS and SVG embedded in the binary, with no
// build step. Every URL the pages use is relative, so the UI works at the server root and under any
// prefix a proxy mounts it at (jupyter-server-proxy's /user/<name>/proxy/<port>/).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Options configures the UI handler.
type Options struct {
	// FrameAncestors are extra origins allowed to embed the pages in a frame (the log panel in a
	// notebook output on another origin). The server's own origin is always allowed.
	FrameAncestors []string
}

// asset is one embedded file, prepared once: its ETag and, when it pays, a gzip copy.
type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Handler serves the UI. "/" is index.html; an unknown name without an extension at the top level
// (e.g. a bookmarked "/runs") also gets index.html, whose router uses the URL fragment. Deeper unknown
// paths get 404: index.html's relative asset URLs would resolve wrongly there.
//
// Assets are revalidated on every use (Cache-Control: no-cache) against a content-hash ETag, so an
// upgraded binary is picked up at once while unchanged files cost only a 304.
func Handler(opts Options) http.Handler {
	assets := map[string]*asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		a.contentType = mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js":
			a.contentType = "text/javascript; charset=utf-8"
		case ".svg":
			a.contentType = "image/svg+xml"
		}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		if len(body) > 1024 {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(body)
			zw.Close()
			if buf.Len() < len(body)*9/10 {
				a.gz = buf.Bytes()
			}
		}
		assets[strings.TrimPrefix(p, "static/")] = a
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic(fmt.Sprintf("web: read embedded UI: %v", err))
	}
	ancestors := "'self'"
	for _, o := range opts.FrameAncestors {
		if o == "*" {
			ancestors = "*"
			break
		}
		ancestors += " " + strings.TrimRight(o, "/")
	}
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors " + ancestors

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		a := assets[name]
		if a == nil && !strings.Contains(name, "/") && path.Ext(name) == "" {
			a = assets["index.html"]
		}
		if a == nil {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		h.Add("Vary", "Accept-Encoding")
		if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := a.body
		if a.gz != nil && acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			body = a.gz
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	})
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
