package handlers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/runs"
)

const (
	hAPIPassword = "bearer-T0ken-xyz-123"
	hCOSPassword = "cos-Secret-456789"
	hShortPass   = "Sh0rt!x"
	hToken       = "api-token-for-tests"
)

// runtimeAPI is the runtime endpoints mounted as server/routes.go mounts them, behind the API token.
type runtimeAPI struct {
	t     *testing.T
	srv   *httptest.Server
	store *runs.RuntimeStore
	dir   string
	log   *bytes.Buffer
	// bodies collects every response body, to be searched for secrets at the end.
	bodies []string
}

func newRuntimeAPI(t *testing.T) *runtimeAPI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "metadata")
	store, err := runs.NewRuntimeStore(dir, runs.RuntimeStoreOptions{DefaultRunnerImage: "ghcr.io/kfbridge/kfbridge:latest"})
	if err != nil {
		t.Fatal(err)
	}
	a := &runtimeAPI{t: t, store: store, dir: dir, log: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := chi.NewRouter()
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(handlers.RequireToken(log, hToken))
		r.Get("/runtimes", handlers.ListRuntimes(log, store).ServeHTTP)
		r.Post("/runtimes", handlers.CreateRuntime(log, store).ServeHTTP)
		r.Get("/runtimes/{name}", handlers.GetRuntime(log, store).ServeHTTP)
		r.Put("/runtimes/{name}", handlers.UpdateRuntime(log, store).ServeHTTP)
		r.Delete("/runtimes/{name}", handlers.DeleteRuntime(log, store).ServeHTTP)
		r.Get("/runtime-images", handlers.ListRuntimeImages(log, store).ServeHTTP)
		r.Post("/runtime-images", handlers.CreateRuntimeImage(log, store).ServeHTTP)
		r.Get("/runtime-images/{name}", handlers.GetRuntimeImage(log, store).ServeHTTP)
		r.Put("/runtime-images/{name}", handlers.UpdateRuntimeImage(log, store).ServeHTTP)
		r.Delete("/runtime-images/{name}", handlers.DeleteRuntimeImage(log, store).ServeHTTP)
	})
	a.srv = httptest.NewServer(r)
	t.Cleanup(a.srv.Close)
	return a
}

// do sends a request and returns the status, headers and body.
func (a *runtimeAPI) do(method, path, body string) (int, http.Header, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a.bodies = append(a.bodies, string(b))
	return resp.StatusCode, resp.Header, b
}

func (a *runtimeAPI) want(method, path, body string, status int) []byte {
	a.t.Helper()
	got, hdr, b := a.do(method, path, body)
	if got != status {
		a.t.Fatalf("%s %s = %d %s, want %d", method, path, got, b, status)
	}
	if status >= 400 && hdr.Get("Content-Type") != "application/problem+json" {
		a.t.Errorf("%s %s error content type %q", method, path, hdr.Get("Content-Type"))
	}
	return b
}

// checkNoSecrets fails if any response body or log line holds a secret value.
func (a *runtimeAPI) checkNoSecrets() {
	a.t.Helper()
	for _, sec := range []string{hAPIPassword, hCOSPassword, hShortPass} {
		for _, b := range a.bodies {
			if strings.Contains(b, sec) {
				a.t.Errorf("a response body reveals a secret: %s", b)
			}
		}
		if strings.Contains(a.log.String(), sec) {
			a.t.Errorf("the log reveals a secret:\n%s", a.log)
		}
	}
}

const bearerRuntime = `{
  "name": "prod",
  "display_name": "Production KFP",
  "schema_name": "kfp",
  "metadata": {
    "api_endpoint": "https://kubeflow.example.com/pipeline",
    "user_namespace": "team-a",
    "api_version": "v1beta1",
    "auth_type": "EXISTING_BEARER_TOKEN",
    "api_password": "` + hAPIPassword + `",
    "cos_endpoint": "http://minio-service.kubeflow:9000",
    "cos_bucket": "team-a-pipelines",
    "cos_auth_type": "USER_CREDENTIALS",
    "cos_username": "minio",
    "cos_password": "` + hCOSPassword + `"
  }
}`

func TestRuntimeAPI(t *testing.T) {
	a := newRuntimeAPI(t)
	defer a.checkNoSecrets()

	// Without the token: 401.
	resp, err := http.Get(a.srv.URL + "/api/v1/runtimes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}

	var list map[string][]runs.RuntimeConfig
	json.Unmarshal(a.want("GET", "/api/v1/runtimes", "", 200), &list)
	if len(list["runtimes"]) != 1 || list["runtimes"][0].Name != "local" {
		t.Fatalf("initial list = %+v", list)
	}

	status, hdr, b := a.do("POST", "/api/v1/runtimes", bearerRuntime)
	if status != http.StatusCreated || hdr.Get("Location") != "/api/v1/runtimes/prod" {
		t.Fatalf("create = %d %s (Location %q)", status, b, hdr.Get("Location"))
	}
	var created runs.RuntimeConfig
	json.Unmarshal(b, &created)
	if created.Metadata.APIPassword != runs.SecretPlaceholder || created.Metadata.COSPassword != runs.SecretPlaceholder {
		t.Errorf("create answer secrets %q/%q, want the placeholder", created.Metadata.APIPassword, created.Metadata.COSPassword)
	}

	b = a.want("POST", "/api/v1/runtimes", bearerRuntime, http.StatusConflict)
	if !strings.Contains(string(b), "already exists") {
		t.Errorf("conflict detail: %s", b)
	}

	// Validation: 400 naming the field, with the secret not echoed.
	bad := strings.Replace(bearerRuntime, `"name": "prod"`, `"name": "prod2"`, 1)
	bad = strings.Replace(bad, hCOSPassword, hShortPass, 1)
	b = a.want("POST", "/api/v1/runtimes", bad, http.StatusBadRequest)
	if !strings.Contains(string(b), "metadata.cos_password") {
		t.Errorf("400 does not name the field: %s", b)
	}
	b = a.want("POST", "/api/v1/runtimes", strings.Replace(bearerRuntime, `"api_endpoint"`, `"api_endpiont"`, 1), http.StatusBadRequest)
	if !strings.Contains(string(b), "api_endpiont") {
		t.Errorf("unknown field not named: %s", b)
	}
	a.want("POST", "/api/v1/runtimes", `{"name":"x"`, http.StatusBadRequest)

	// Read paths.
	json.Unmarshal(a.want("GET", "/api/v1/runtimes", "", 200), &list)
	if len(list["runtimes"]) != 2 || list["runtimes"][1].Name != "prod" {
		t.Errorf("list = %+v", list)
	}
	var got runs.RuntimeConfig
	json.Unmarshal(a.want("GET", "/api/v1/runtimes/prod", "", 200), &got)
	if got.Metadata.UserNamespace != "team-a" || got.Metadata.APIPassword != runs.SecretPlaceholder {
		t.Errorf("get = %+v", got)
	}
	a.want("GET", "/api/v1/runtimes/nope", "", http.StatusNotFound)
	a.want("GET", "/api/v1/runtimes/..%2F..%2Fetc", "", http.StatusNotFound)
	a.want("GET", "/api/v1/runtimes/local", "", 200)

	// PUT what GET returned (placeholders included): the stored secrets still work.
	got.Metadata.UserNamespace = "team-b"
	body, _ := json.Marshal(got)
	a.want("PUT", "/api/v1/runtimes/prod", string(body), 200)
	full, err := a.store.RuntimeWithSecrets("prod")
	if err != nil {
		t.Fatal(err)
	}
	if full.Metadata.APIPassword != hAPIPassword || full.Metadata.COSPassword != hCOSPassword || full.Metadata.UserNamespace != "team-b" {
		t.Errorf("after placeholder PUT: %+v", full.Metadata)
	}
	opts, err := full.Metadata.KFPOptions()
	if err != nil || opts.Auth.Token != hAPIPassword {
		t.Errorf("KFP options after PUT: token kept = %v, %v", opts.Auth.Token == hAPIPassword, err)
	}
	// A bad new secret on PUT: 400, not echoed, stored one untouched.
	got.Metadata.COSPassword = hShortPass
	body, _ = json.Marshal(got)
	a.want("PUT", "/api/v1/runtimes/prod", string(body), http.StatusBadRequest)
	a.want("PUT", "/api/v1/runtimes/nope", string(body), http.StatusNotFound)
	a.want("PUT", "/api/v1/runtimes/local", string(body), http.StatusConflict)

	a.want("DELETE", "/api/v1/runtimes/local", "", http.StatusConflict)
	a.want("DELETE", "/api/v1/runtimes/prod", "", http.StatusNoContent)
	a.want("DELETE", "/api/v1/runtimes/prod", "", http.StatusNotFound)

	// A server-side failure (the instance file is a directory) is a 500 with a generic message;
	// the detail goes to the log only.
	os.Mkdir(filepath.Join(a.dir, "runtimes", "broken.json"), 0o700)
	b = a.want("GET", "/api/v1/runtimes/broken", "", http.StatusInternalServerError)
	if strings.Contains(string(b), a.dir) {
		t.Errorf("500 leaks a path: %s", b)
	}
	if !strings.Contains(a.log.String(), "broken") {
		t.Errorf("500 not logged: %s", a.log)
	}
}

func TestRuntimeImageAPI(t *testing.T) {
	a := newRuntimeAPI(t)
	defer a.checkNoSecrets()
	var list map[string][]runs.RuntimeImage
	json.Unmarshal(a.want("GET", "/api/v1/runtime-images", "", 200), &list)
	if l, ok := list["runtime-images"]; !ok || len(l) != 0 {
		t.Fatalf("initial list = %+v (want an empty array under runtime-images)", list)
	}
	status, hdr, b := a.do("POST", "/api/v1/runtime-images",
		`{"display_name":"Pandas","metadata":{"image_name":"quay.io/org/pandas:1.5","pull_policy":"IfNotPresent","tags":["py"]}}`)
	if status != http.StatusCreated || hdr.Get("Location") != "/api/v1/runtime-images/pandas" {
		t.Fatalf("create = %d %s, Location %q", status, b, hdr.Get("Location"))
	}
	b = a.want("POST", "/api/v1/runtime-images", `{"name":"bad","display_name":"x","metadata":{"image_name":"x:1","pull_policy":"Sometimes"}}`, 400)
	if !strings.Contains(string(b), "metadata.pull_policy") {
		t.Errorf("400 does not name the field: %s", b)
	}
	a.want("POST", "/api/v1/runtime-images", `{"name":"pandas","display_name":"x","metadata":{"image_name":"x:1"}}`, 409)
	a.want("PUT", "/api/v1/runtime-images/pandas", `{"display_name":"Pandas 2","metadata":{"image_name":"quay.io/org/pandas:2.0"}}`, 200)
	var im runs.RuntimeImage
	json.Unmarshal(a.want("GET", "/api/v1/runtime-images/pandas", "", 200), &im)
	if im.DisplayName != "Pandas 2" || im.Metadata.ImageName != "quay.io/org/pandas:2.0" || im.SchemaName != "runtime-image" {
		t.Errorf("after update: %+v", im)
	}
	a.want("PUT", "/api/v1/runtime-images/pandas", `{"name":"other","display_name":"x","metadata":{"image_name":"x:1"}}`, 400)
	a.want("DELETE", "/api/v1/runtime-images/pandas", "", 204)
	a.want("GET", "/api/v1/runtime-images/pandas", "", 404)
}
