package handlers

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kfbridge/kfbridge/runs"
)

func TestScanEnvVars(t *testing.T) {
	nb := func(lang string, sources ...any) []byte {
		var cells []any
		for _, s := range sources {
			cells = append(cells, map[string]any{"cell_type": "code", "source": s})
		}
		cells = append(cells, map[string]any{"cell_type": "markdown", "source": `os.getenv("MARKDOWN")`})
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"kernelspec": map[string]any{"language": lang}}, "cells": cells})
		return b
	}
	cases := []struct {
		name, ext string
		src       []byte
		want      map[string]string
	}{
		{"python calls", ".py", []byte(`import os
a = os.getenv("A")
b = os.getenv('B', 'bee')
c = os.getenv(key="C", default="see")
d = os.environ["D"]; e = os.environ.get( 'E' , "e#1" )
url = "http://x/#frag"; f = os.getenv("F")  # os.getenv("COMMENT")
# os.environ["COMMENTED"]
g = os.getenv("G", some_default)
`), map[string]string{"A": "", "B": "bee", "C": "see", "D": "", "E": "e#1", "F": "", "G": ""}},
		{"r script", ".r", []byte("x <- Sys.getenv(\"RX\", unset = \"u\")\ny <- Sys.getenv('RY')\n# Sys.getenv(\"NO\")\nz <- Sys.getenv(x = \"RZ\", \"zz\")\n"),
			map[string]string{"RX": "u", "RY": "", "RZ": "zz"}},
		{"python notebook", ".ipynb", nb("python", []string{"import os\n", "p = os.getenv('P', '1')\n"}, "q = os.environ['Q']"),
			map[string]string{"P": "1", "Q": ""}},
		{"R notebook", ".ipynb", nb("R", "v <- Sys.getenv(\"RV\")\nos.getenv(\"NOT_R\")"), map[string]string{"RV": ""}},
		{"default wins over none", ".py", []byte("os.getenv('X')\nos.getenv('X', 'later')\nos.getenv('X', 'ignored')\n"), map[string]string{"X": "later"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := scanEnvVars(c.ext, c.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	if _, err := scanEnvVars(".ipynb", []byte("{not json")); err == nil {
		t.Error("a broken notebook was accepted")
	}
	if _, err := scanEnvVars(".txt", nil); err == nil {
		t.Error("a .txt file was accepted")
	}
}

func xsrfV2(token string, mask []byte) string {
	m := make([]byte, len(token))
	for i := range token {
		m[i] = token[i] ^ mask[i%len(mask)]
	}
	return fmt.Sprintf("2|%x|%x|1700000000", mask, m)
}

func TestJupyterXSRF(t *testing.T) {
	tok := "a3f1c2d4e5b6a7980a1b2c3d4e5f6071"
	cases := []struct {
		name           string
		cookie, header string
		ok             bool
	}{
		{"same token, different masks", xsrfV2(tok, []byte{1, 2, 3, 4}), xsrfV2(tok, []byte{200, 7, 9, 11}), true},
		{"identical values", xsrfV2(tok, []byte{1, 2, 3, 4}), xsrfV2(tok, []byte{1, 2, 3, 4}), true},
		{"v1 hex", "0a1b2c", "0a1b2c", true},
		{"different tokens", xsrfV2(tok, []byte{1, 2, 3, 4}), xsrfV2("b3f1c2d4e5b6a7980a1b2c3d4e5f6071", []byte{1, 2, 3, 4}), false},
		{"missing header", xsrfV2(tok, []byte{1}), "", false},
		{"missing cookie", "", xsrfV2(tok, []byte{1}), false},
		{"malformed v2", "2|zz|yy|1", "2|zz|yy|1", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/elyra/pipeline/schedule", nil)
		if c.cookie != "" {
			r.AddCookie(&http.Cookie{Name: XSRFCookie, Value: c.cookie})
		}
		if c.header != "" {
			r.Header.Set(XSRFHeader, c.header)
		}
		if got := JupyterXSRFOK(r); got != c.ok {
			t.Errorf("%s: JupyterXSRFOK = %v, want %v", c.name, got, c.ok)
		}
	}
}

func TestTrustProxyAuth(t *testing.T) {
	const token = "kfbridge-token"
	var seen string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get("Authorization"); w.WriteHeader(204) })
	log := slog.New(slog.DiscardHandler)
	xsrf := xsrfV2("tok", []byte{3})
	cases := []struct {
		name, method, path, auth string
		xsrf, enabled            bool
		want                     int
		wantAuth                 string
	}{
		{"disabled: passes untouched", "POST", "/elyra/pipeline/schedule", "token jupyter", false, false, 204, "token jupyter"},
		{"GET needs no XSRF", "GET", "/elyra/metadata/runtimes", "token jupyter", false, true, 204, "Bearer " + token},
		{"POST without XSRF", "POST", "/elyra/pipeline/schedule", "token jupyter", false, true, 403, ""},
		{"POST on /api/v1 without XSRF", "POST", "/api/v1/runs", "", false, true, 403, ""},
		{"a wrong kfbridge CSRF header", "POST", "/api/v1/runs", "", false, true, 403, ""},
		{"POST with XSRF", "POST", "/pipeline/schedule", "token jupyter", true, true, 204, "Bearer " + token},
		{"kfbridge's own token: untouched, no XSRF needed", "POST", "/elyra/pipeline/schedule", "Bearer " + token, false, true, 204, "Bearer " + token},
		{"kfbridge's CSRF header instead of Jupyter's", "POST", "/api/v1/runs/x:cancel", "", false, true, 204, "Bearer " + token},
	}
	for _, c := range cases {
		seen = ""
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if c.xsrf {
			r.AddCookie(&http.Cookie{Name: XSRFCookie, Value: xsrf})
			r.Header.Set(XSRFHeader, xsrf)
		}
		if strings.HasSuffix(c.path, ":cancel") {
			r.Header.Set(CSRFHeader, CSRFToken(token))
		}
		w := httptest.NewRecorder()
		TrustProxyAuth(log, token, c.enabled)(next).ServeHTTP(w, r)
		if w.Code != c.want || seen != c.wantAuth {
			t.Errorf("%s: status %d auth %q, want %d %q (%s)", c.name, w.Code, seen, c.want, c.wantAuth, w.Body)
		}
		if w.Code == 403 && strings.HasPrefix(c.path, "/elyra/") {
			var p ElyraProblem
			if json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Reason != "Forbidden" {
				t.Errorf("%s: 403 body is not Elyra's shape: %s", c.name, w.Body)
			}
		}
	}
}

func TestProxyPaths(t *testing.T) {
	req := func(path, prefix string) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		if prefix != "" {
			r.Header.Set("X-Forwarded-Prefix", prefix)
		}
		return r
	}
	cases := []struct {
		name                 string
		p                    ProxyPaths
		path, prefix         string
		root, elyra, jupyter string
	}{
		{"direct", ProxyPaths{}, "/elyra/metadata/runtimes", "", "", "/elyra", "/"},
		{"behind jupyter-server-proxy", ProxyPaths{TrustForwarded: true}, "/metadata/runtimes", "/user/alice/elyra", "/user/alice/elyra", "/user/alice/elyra", "/user/alice/"},
		{"trailing slash", ProxyPaths{TrustForwarded: true}, "/metadata/runtimes", "/user/alice/elyra/", "/user/alice/elyra", "/user/alice/elyra", "/user/alice/"},
		{"header not trusted", ProxyPaths{BaseURL: "/base"}, "/elyra/x", "/evil", "/base", "/base/elyra", "/"},
		{"another host is refused", ProxyPaths{TrustForwarded: true, BaseURL: "/b"}, "/x", "//evil.example/x", "/b", "/b", "/"},
		{"a URL is refused", ProxyPaths{TrustForwarded: true}, "/x", "https://evil.example", "", "", "/"},
		{"header injection is refused", ProxyPaths{TrustForwarded: true}, "/x", "/a\r\nSet-Cookie: x", "", "", "/"},
	}
	for _, c := range cases {
		r := req(c.path, c.prefix)
		if got := c.p.Root(r); got != c.root {
			t.Errorf("%s: Root %q, want %q", c.name, got, c.root)
		}
		if got := c.p.ElyraBase(r); got != c.elyra {
			t.Errorf("%s: ElyraBase %q, want %q", c.name, got, c.elyra)
		}
		if got := c.p.JupyterBase(r); got != c.jupyter {
			t.Errorf("%s: JupyterBase %q, want %q", c.name, got, c.jupyter)
		}
	}
}

func TestElyraErrorShape(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("delete: %w", runs.ErrBuiltin), 403},
		{fmt.Errorf("x: %w", runs.ErrConflict), 409},
		{fmt.Errorf("x: %w", runs.ErrNotFound), 404},
		{fmt.Errorf("boom at /secret/path"), 500},
	} {
		w := httptest.NewRecorder()
		ElyraError(log, w, httptest.NewRequest("GET", "/elyra/x", nil), c.err)
		var p ElyraProblem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Code != c.code || p.Reason != http.StatusText(c.code) {
			t.Errorf("%v: %d %s, want %d", c.err, w.Code, w.Body, c.code)
		}
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(p.Timestamp) {
			t.Errorf("timestamp %q is not YYYY-MM-DD HH:MM:SS", p.Timestamp)
		}
		if c.code == 500 && strings.Contains(p.Message, "/secret/path") {
			t.Errorf("a server error leaks its detail: %s", p.Message)
		}
	}
}

// findElyraSpecDir finds shared/specs/elyra: $KFBRIDGE_ELYRA_SPECS, else above the working directory.
func findElyraSpecDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KFBRIDGE_ELYRA_SPECS"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for {
		cand := filepath.Join(dir, "shared", "specs", "elyra")
		if _, err := os.Stat(filepath.Join(cand, "meta-schema.json")); err == nil {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			if os.Getenv("CI") == "true" {
				t.Fatal("shared/specs/elyra not found above the working directory")
			}
			t.Skip("shared/specs/elyra not found above the working directory")
		}
		dir = parent
	}
}

// TestElyraSchemas: kfbridge's kfp and runtime-image schemas are valid Elyra metadata schemas
// (meta-schema.json), name every metadata property Elyra's own schema has, and as JSON schemas
// accept what the store stores and reject what it refuses.
func TestElyraSchemas(t *testing.T) {
	dir := findElyraSpecDir(t)
	load := func(name string) map[string]any {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	compile := func(name string, doc map[string]any) *jsonschema.Schema {
		c := jsonschema.NewCompiler()
		doc = roundTrip(t, doc)
		delete(doc, "$schema")
		if err := c.AddResource(name, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(name)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		return s
	}
	meta := compile("meta.json", load("meta-schema.json"))
	for _, c := range []struct {
		ours   map[string]any
		elyras string
		good   any
		bad    any
	}{
		{kfpSchema(), "kfp.json",
			runs.RuntimeConfig{Name: "k", DisplayName: "K", SchemaName: "kfp", Metadata: runs.RuntimeMetadata{RuntimeType: "KUBEFLOW_PIPELINES",
				APIEndpoint: "http://kf/pipeline", AuthType: "NO_AUTHENTICATION", COSEndpoint: "http://minio:9000", COSBucket: "bkt",
				COSAuthType: "USER_CREDENTIALS", COSUsername: "u", COSPassword: runs.SecretPlaceholder, Tags: []string{}}},
			map[string]any{"schema_name": "kfp", "display_name": "K", "metadata": map[string]any{"api_endpoint": "http://kf",
				"cos_endpoint": "http://minio:9000", "cos_bucket": "bkt", "cos_auth_type": "NONE"}}},
		{runtimeImageSchema(), "runtime-image.json",
			runs.RuntimeImage{Name: "i", DisplayName: "I", SchemaName: "runtime-image", Metadata: runs.ImageMetadata{ImageName: "python:3.11", PullPolicy: "Always", Tags: []string{}}},
			map[string]any{"schema_name": "runtime-image", "display_name": "I", "metadata": map[string]any{"image_name": "x", "pull_policy": "Sometimes"}}},
	} {
		name := c.ours["name"].(string)
		if err := meta.Validate(roundTrip(t, c.ours)); err != nil {
			t.Errorf("%s: not a valid Elyra metadata schema: %v", name, err)
		}
		elyra := load(c.elyras)
		for _, k := range []string{"schemaspace", "schemaspace_id", "name"} {
			if c.ours[k] != elyra[k] {
				t.Errorf("%s: %s %v, Elyra has %v", name, k, c.ours[k], elyra[k])
			}
		}
		ourProps := c.ours["properties"].(map[string]any)["metadata"].(map[string]any)["properties"].(map[string]any)
		for k := range elyra["properties"].(map[string]any)["metadata"].(map[string]any)["properties"].(map[string]any) {
			if _, ok := ourProps[k]; !ok {
				t.Errorf("%s: Elyra's metadata property %s is missing", name, k)
			}
		}
		s := compile(name+".json", c.ours)
		if err := s.Validate(roundTrip(t, c.good)); err != nil {
			t.Errorf("%s: rejects a stored instance: %v", name, err)
		}
		if err := s.Validate(roundTrip(t, c.bad)); err == nil {
			t.Errorf("%s: accepts an invalid enum value", name)
		}
	}
}

func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportTarget(t *testing.T) {
	rt := func(v string) runs.RuntimeConfig {
		return runs.RuntimeConfig{Metadata: runs.RuntimeMetadata{APIVersion: v}}
	}
	for _, c := range []struct {
		format string
		rc     runs.RuntimeConfig
		want   string
	}{
		{"yaml", runs.LocalRuntime(), runs.FormatKFPv2},
		{"yaml", rt("auto"), runs.FormatKFPv2},
		{"yaml", rt("v2beta1"), runs.FormatKFPv2},
		{"yaml", rt("v1beta1"), runs.FormatArgo},
		{"argo", rt("v2beta1"), runs.FormatArgo},
		{"kfp-v2", rt("v1beta1"), runs.FormatKFPv2},
		{"py", rt(""), ""},
		{"zip", rt(""), ""},
	} {
		got, err := exportTarget(c.format, c.rc)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("exportTarget(%q, %q) = %q, %v; want %q", c.format, c.rc.Metadata.APIVersion, got, err, c.want)
		}
	}
}
