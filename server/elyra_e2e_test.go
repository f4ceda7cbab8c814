package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// elyraWorkspace writes the files the Elyra flows use.
func elyraWorkspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "flows", "hello.py"), "import os\nprint(os.getenv(\"GREETING\", \"hello\") + \" from elyra\", flush=True)\n")
	writeFile(t, filepath.Join(ws, "env.py"), "import os\n"+
		"a = os.getenv(\"ALPHA\")\n"+
		"b = os.getenv('BETA', 'b-default')\n"+
		"c = os.environ[\"GAMMA\"]\n"+
		"d = os.environ.get(\"DELTA\", \"4\")  # os.getenv(\"IN_COMMENT\") is a comment\n"+
		"# os.getenv(\"COMMENTED\")\n")
	nb := map[string]any{"nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]any{"kernelspec": map[string]any{"language": "python", "name": "python3"}},
		"cells": []any{
			map[string]any{"cell_type": "markdown", "metadata": map[string]any{}, "source": "os.getenv(\"IN_MARKDOWN\")"},
			map[string]any{"cell_type": "code", "metadata": map[string]any{}, "outputs": []any{}, "execution_count": nil,
				"source": []string{"import os\n", "data = os.environ.get('DATA_DIR', '/data')\n", "mode = os.environ['MODE']\n"}},
		}}
	b, _ := json.Marshal(nb)
	writeFile(t, filepath.Join(ws, "env.ipynb"), string(b))
	writeFile(t, filepath.Join(ws, "stats.r"), "x <- Sys.getenv(\"R_INPUT\", unset = \"none\")\ny <- Sys.getenv('R_OTHER')\n")
	if err := os.Mkdir(filepath.Join(ws, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	return ws
}

// frontendPipeline is the pipeline JSON Elyra's frontend POSTs: node file names already
// workspace-relative (the .pipeline file is flows/hello.pipeline), and app_data.name, source and
// runtime_config added to the file's content. legacyKey spells it runtime-config (Elyra ≤3.2).
func frontendPipeline(runtimeConfig, runtimeType string, legacyKey bool, file string) map[string]any {
	appData := map[string]any{
		"version": 8, "name": "hello-elyra", "source": "hello.pipeline",
		"properties": map[string]any{"name": "hello", "runtime": "Generic", "description": "from the editor",
			"pipeline_defaults": map[string]any{"runtime_image": "python:3.11"}},
		"ui_data": map[string]any{"comments": []any{}},
	}
	if runtimeType != "" {
		appData["runtime_type"] = runtimeType
	}
	if legacyKey {
		appData["runtime-config"] = runtimeConfig
	} else {
		appData["runtime_config"] = runtimeConfig
	}
	return map[string]any{
		"doc_type": "pipeline", "version": "3.0", "id": "elyra-auto-generated-pipeline", "primary_pipeline": "main",
		"json_schema": "http://api.dataplatform.ibm.com/schemas/common-pipeline/pipeline-flow/pipeline-flow-v3-schema.json",
		"schemas":     []any{},
		"pipelines": []any{map[string]any{
			"id": "main", "runtime_ref": "", "app_data": appData,
			"nodes": []any{map[string]any{
				"id": "0b6e3b1c-5f0a-4a8e-9d43-4a3b2f7c9e11", "type": "execution_node", "op": "execute-python-node",
				"app_data": map[string]any{
					"label": "",
					"component_parameters": map[string]any{
						"filename": file, "runtime_image": "python:3.11", "dependencies": []string{}, "include_subdirectories": false,
						"outputs": []string{}, "env_vars": []any{map[string]any{"env_var": "GREETING", "value": "hi"}},
						"kubernetes_secrets": []any{}, "mounted_volumes": []any{}, "kubernetes_pod_annotations": []any{},
						"kubernetes_pod_labels": []any{}, "kubernetes_tolerations": []any{},
					},
					"ui_data": map[string]any{"label": "hello.py", "image": "", "x_pos": 100, "y_pos": 80, "description": "Run Python script"},
				},
				"inputs":  []any{map[string]any{"id": "inPort", "app_data": map[string]any{"ui_data": map[string]any{"cardinality": map[string]any{"min": 0, "max": -1}, "label": "Input Port"}}}},
				"outputs": []any{map[string]any{"id": "outPort", "app_data": map[string]any{"ui_data": map[string]any{"cardinality": map[string]any{"min": 0, "max": -1}, "label": "Output Port"}}}},
			}},
		}},
	}
}

// elyraFlow says where the browser reaches kfbridge in one setting (direct or behind the proxy).
type elyraFlow struct {
	host        string // scheme://host the browser talks to
	root        string // kfbridge's root path as the browser sees it ("" or "/user/alice/elyra")
	elyraBase   string // where the Elyra API is ("/elyra" or "/user/alice/elyra")
	jupyterBase string // Jupyter's base URL ("/" or "/user/alice/")
	header      func(*http.Request)
	srv         *testServer
}

const kfpSecret = "s3cret-bearer-token-for-kfp"
const cosSecret = "s3cret-cos-password"

// runElyraFlow drives every Elyra route the way the frontend does and checks the answers.
func runElyraFlow(t *testing.T, f elyraFlow) *elyraClient {
	c := newElyraClient(t, f.host+strings.TrimSuffix(f.jupyterBase, "/"), f.header)

	// --- API description, schemaspaces, schemas ---
	resp, raw := c.call("GET", "/elyra/elyra.yaml", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("elyra.yaml: %d", resp.StatusCode)
	}
	if doc, err := openapi3.NewLoader().LoadFromData(raw); err != nil {
		t.Errorf("served elyra.yaml does not load: %v", err)
	} else if err := doc.Validate(context.Background()); err != nil {
		t.Errorf("served elyra.yaml is not valid OpenAPI: %v", err)
	}
	_, m := c.expect("GET", "/elyra/schemaspace", nil, 200)
	if got := fmt.Sprint(m["schemaspaces"]); !strings.Contains(got, "runtimes") || !strings.Contains(got, "runtime-images") {
		t.Errorf("schemaspaces: %s", got)
	}
	_, m = c.expect("GET", "/elyra/schemaspace/runtimes", nil, 200)
	if m["id"] != "130b8e00-de7c-4b32-b553-b4a52824a3b5" {
		t.Errorf("runtimes schemaspace id %v", m["id"])
	}
	c.expect("GET", "/elyra/schemaspace/119c9740-d73f-48c6-a97a-599d3acaf41d", nil, 200)
	c.expect("GET", "/elyra/schemaspace/no-such-space", nil, 404)
	_, m = c.expect("GET", "/elyra/schema/runtimes", nil, 200)
	if list, _ := m["runtimes"].([]any); len(list) != 1 || list[0].(map[string]any)["name"] != "kfp" {
		t.Errorf("runtimes schemas: %v", m)
	}
	_, m = c.expect("GET", "/elyra/schema/runtimes/kfp", nil, 200)
	if m["schemaspace"] != "runtimes" || m["runtime_type"] != runs.RuntimeTypeKFP {
		t.Errorf("kfp schema: %v", m)
	}
	c.expect("GET", "/elyra/schema/runtime-images/runtime-image", nil, 200)
	c.expect("GET", "/elyra/schema/runtimes/airflow", nil, 404)
	_, m = c.expect("GET", "/elyra/schema/code-snippets", nil, 200)
	if l, ok := m["code-snippets"].([]any); !ok || len(l) != 0 {
		t.Errorf("code-snippets schemas: %v", m)
	}

	// --- metadata: a KFP runtime through Elyra's API, secrets write-only ---
	kfpRuntime := map[string]any{"display_name": "My KFP", "schema_name": "kfp", "metadata": map[string]any{
		"runtime_type": "KUBEFLOW_PIPELINES", "api_endpoint": "http://kfp.example:8888/pipeline", "user_namespace": "alice",
		"engine": "Argo", "auth_type": "EXISTING_BEARER_TOKEN", "api_password": kfpSecret,
		"cos_endpoint": "http://minio.example:9000", "cos_bucket": "elyra-bucket", "cos_auth_type": "USER_CREDENTIALS",
		"cos_username": "minio", "cos_password": cosSecret, "tags": []string{}}}
	resp, created := c.expect("POST", "/elyra/metadata/runtimes", kfpRuntime, 201)
	noSecret(t, created)
	name, _ := created["name"].(string)
	if name != "my_kfp" {
		t.Fatalf("name derived from display_name: %q, want my_kfp", name)
	}
	if loc, want := resp.Header.Get("Location"), f.elyraBase+"/metadata/runtimes/my_kfp"; loc != want {
		t.Errorf("Location %q, want %q", loc, want)
	}
	_, got := c.expect("GET", "/elyra/metadata/runtimes/my_kfp", nil, 200)
	noSecret(t, got)
	md := got["metadata"].(map[string]any)
	if md["api_password"] != runs.SecretPlaceholder || md["cos_password"] != runs.SecretPlaceholder {
		t.Errorf("secrets read back as %v / %v, want the placeholder", md["api_password"], md["cos_password"])
	}
	_, list := c.expect("GET", "/elyra/metadata/runtimes", nil, 200)
	noSecret(t, list)
	if l, _ := list["runtimes"].([]any); len(l) != 1 || l[0].(map[string]any)["name"] != "my_kfp" {
		t.Errorf("runtimes list: %v", list)
	}
	// The form sends everything back, secrets as the placeholder, with a change elsewhere.
	got["display_name"] = "My KFP (edited)"
	md["user_namespace"] = "team-a"
	_, updated := c.expect("PUT", "/elyra/metadata/runtimes/my_kfp", got, 200)
	noSecret(t, updated)
	if updated["display_name"] != "My KFP (edited)" {
		t.Errorf("update not applied: %v", updated)
	}
	// The stored secrets are still the real ones (the store's full-config read, as a KFP submit uses it).
	store, err := runs.NewRuntimeStore(filepath.Join(f.srv.DataDir, "metadata"), runs.RuntimeStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := store.RuntimeWithSecrets("my_kfp")
	if err != nil {
		t.Fatal(err)
	}
	if full.Metadata.APIPassword != kfpSecret || full.Metadata.COSPassword != cosSecret || full.Metadata.UserNamespace != "team-a" {
		t.Errorf("after a placeholder update: api_password kept=%v cos_password kept=%v namespace=%q",
			full.Metadata.APIPassword == kfpSecret, full.Metadata.COSPassword == cosSecret, full.Metadata.UserNamespace)
	}
	if opts, err := full.Metadata.KFPOptions(); err != nil || opts.Auth.Token != kfpSecret {
		t.Errorf("KFP client options from the stored runtime: token kept=%v err=%v", opts.Auth.Token == kfpSecret, err)
	}
	c.expect("POST", "/elyra/metadata/runtimes", map[string]any{"name": "my_kfp", "display_name": "dup", "schema_name": "kfp", "metadata": kfpRuntime["metadata"]}, 409)
	_, bad := c.expect("POST", "/elyra/metadata/runtimes", map[string]any{"display_name": "Broken", "schema_name": "kfp",
		"metadata": map[string]any{"cos_endpoint": "http://minio:9000", "cos_bucket": "b1b", "cos_auth_type": "USER_CREDENTIALS"}}, 400)
	if !strings.Contains(fmt.Sprint(bad["message"]), "api_endpoint") {
		t.Errorf("400 does not name the missing field: %v", bad)
	}
	c.expect("POST", "/elyra/metadata/runtimes", []byte(`{"display_name": "x", "schema_name": "kfp", "metadata": {`), 400)
	c.expect("GET", "/elyra/metadata/runtimes/no_such", nil, 404)
	c.expect("PUT", "/elyra/metadata/runtimes/no_such", got, 404)
	_, local := c.expect("GET", "/elyra/metadata/runtimes/local", nil, 200)
	if local["schema_name"] != "local" {
		t.Errorf("local runtime: %v", local)
	}
	c.expect("PUT", "/elyra/metadata/runtimes/local", got, 403)
	c.expect("DELETE", "/elyra/metadata/runtimes/local", nil, 403)
	c.expect("GET", "/elyra/metadata/no-such-space", nil, 404)
	_, snippets := c.expect("GET", "/elyra/metadata/code-snippets", nil, 200)
	if l, ok := snippets["code-snippets"].([]any); !ok || len(l) != 0 {
		t.Errorf("code-snippets: %v", snippets)
	}
	c.expect("GET", "/elyra/metadata/component-catalogs", nil, 200)
	c.expect("POST", "/elyra/metadata/code-snippets", map[string]any{"display_name": "s", "schema_name": "code-snippet", "metadata": map[string]any{}}, 404)
	c.expect("GET", "/elyra/metadata/component-catalogs/any", nil, 404)

	// Runtime images: create, list, update, delete.
	img := map[string]any{"display_name": "Pandas 2", "schema_name": "runtime-image", "metadata": map[string]any{
		"image_name": "quay.io/example/pandas:2.0", "pull_policy": "IfNotPresent", "tags": []string{"pandas"}}}
	resp, imgCreated := c.expect("POST", "/elyra/metadata/runtime-images", img, 201)
	if loc, want := resp.Header.Get("Location"), f.elyraBase+"/metadata/runtime-images/pandas_2"; loc != want {
		t.Errorf("Location %q, want %q", loc, want)
	}
	imgCreated["metadata"].(map[string]any)["pull_policy"] = "Always"
	c.expect("PUT", "/elyra/metadata/runtime-images/pandas_2", imgCreated, 200)
	_, imgs := c.expect("GET", "/elyra/metadata/runtime-images", nil, 200)
	if !strings.Contains(fmt.Sprint(imgs), "Always") {
		t.Errorf("runtime images: %v", imgs)
	}

	// --- pipeline editor: runtime types, palette, property schemas, file properties ---
	_, types := c.expect("GET", "/elyra/pipeline/runtimes/types", nil, 200)
	if s := fmt.Sprint(types); !strings.Contains(s, "KUBEFLOW_PIPELINES") || !strings.Contains(s, "LOCAL") {
		t.Errorf("runtime types: %s", s)
	}
	for _, rt := range []string{"KUBEFLOW_PIPELINES", "LOCAL", "kfp"} {
		_, pal := c.expect("GET", "/elyra/pipeline/components/"+rt, nil, 200)
		if s := fmt.Sprint(pal); !strings.Contains(s, "component_parameters") || !strings.Contains(s, "execute-notebook-node") || !strings.Contains(s, "execute-python-node") || !strings.Contains(s, "execute-r-node") {
			t.Errorf("palette %s: %s", rt, s)
		}
	}
	c.expect("GET", "/elyra/pipeline/components/APACHE_AIRFLOW", nil, 400)
	_, props := c.expect("GET", "/elyra/pipeline/components/KUBEFLOW_PIPELINES/notebook/properties", nil, 200)
	if !strings.Contains(fmt.Sprint(props), "quay.io/example/pandas:2.0") {
		t.Errorf("runtime_image choices do not list the configured image: %v", props)
	}
	c.expect("GET", "/elyra/pipeline/components/KUBEFLOW_PIPELINES/elyra-kfp-examples-catalog:a08014f9252f/properties", nil, 404)
	_, def := c.expect("GET", "/elyra/pipeline/components/LOCAL/python-script", nil, 200)
	if def["mimeType"] != "application/json" {
		t.Errorf("component definition: %v", def)
	}
	c.expect("GET", "/elyra/pipeline/components/LOCAL/url-catalog:0123456789ab", nil, 404)
	c.expect("GET", "/elyra/pipeline/KUBEFLOW_PIPELINES/properties", nil, 200)
	c.expect("GET", "/elyra/pipeline/LOCAL/properties", nil, 200)
	c.expect("GET", "/elyra/pipeline/KUBEFLOW_PIPELINES/parameters", nil, 200)
	c.expect("GET", "/elyra/pipeline/LOCAL/parameters", nil, 405)
	c.expect("PUT", "/elyra/pipeline/components/cache", map[string]string{"action": "refresh"}, 204)
	c.expect("PUT", "/elyra/pipeline/components/cache/my-catalog", map[string]string{"action": "refresh"}, 404)
	_, envs := c.expect("GET", "/elyra/contents/properties/env.py", nil, 200)
	wantEnv(t, "env.py", envs, map[string]string{"ALPHA": "", "BETA": "b-default", "GAMMA": "", "DELTA": "4"})
	_, envs = c.expect("GET", "/elyra/contents/properties/env.ipynb", nil, 200)
	wantEnv(t, "env.ipynb", envs, map[string]string{"DATA_DIR": "/data", "MODE": ""})
	_, envs = c.expect("GET", "/elyra/contents/properties/stats.r", nil, 200)
	wantEnv(t, "stats.r", envs, map[string]string{"R_INPUT": "none", "R_OTHER": ""})
	c.expect("GET", "/elyra/contents/properties/missing.py", nil, 404)
	c.expect("GET", "/elyra/contents/properties/adir", nil, 400)

	// --- validate, export, schedule with the pipeline JSON the frontend sends ---
	good := frontendPipeline("", "", false, "flows/hello.py")
	_, val := c.expect("POST", "/elyra/pipeline/validate", good, 200)
	if issues, _ := val["issues"].([]any); len(issues) != 0 || val["title"] == "" {
		t.Errorf("validate a good pipeline: %v", val)
	}
	_, val = c.expect("POST", "/elyra/pipeline/validate", frontendPipeline("", "", false, "flows/missing.py"), 200)
	if !strings.Contains(fmt.Sprint(val["issues"]), "invalidFilePath") {
		t.Errorf("validate a missing file: %v", val)
	}
	_, val = c.expect("POST", "/elyra/pipeline/validate", frontendPipeline("no_such_runtime", "KUBEFLOW_PIPELINES", false, "flows/hello.py"), 200)
	if !strings.Contains(fmt.Sprint(val["issues"]), "invalidRuntime") {
		t.Errorf("validate with an unknown runtime configuration: %v", val)
	}

	exp := map[string]any{"pipeline": frontendPipeline("my_kfp", "KUBEFLOW_PIPELINES", false, "flows/hello.py"),
		"export_format": "yaml", "export_path": "flows/hello.yaml", "overwrite": false}
	resp, body := c.expect("POST", "/elyra/pipeline/export", exp, 201)
	if loc, want := resp.Header.Get("Location"), f.jupyterBase+"api/contents/flows/hello.yaml"; loc != want {
		t.Errorf("export Location %q, want %q", loc, want)
	}
	if body["export_path"] != "flows/hello.yaml" {
		t.Errorf("export body %v", body)
	}
	pkg, err := os.ReadFile(filepath.Join(f.srv.Workspace, "flows", "hello.yaml"))
	if err != nil || !bytes.Contains(pkg, []byte("hello")) {
		t.Errorf("exported package: %v\n%.300s", err, pkg)
	}
	noSecret(t, map[string]any{"package": string(pkg)})
	c.expect("POST", "/elyra/pipeline/export", exp, 409)
	exp["overwrite"] = true
	c.expect("POST", "/elyra/pipeline/export", exp, 201)
	exp["export_format"] = "py"
	_, pyErr := c.expect("POST", "/elyra/pipeline/export", exp, 400)
	if !strings.Contains(fmt.Sprint(pyErr["message"]), "not supported") {
		t.Errorf("py export error: %v", pyErr)
	}
	exp["export_format"], exp["pipeline"] = "yaml", frontendPipeline("", "", false, "flows/missing.py")
	_, vErr := c.expect("POST", "/elyra/pipeline/export", exp, 400)
	if vErr["message"] != "Errors found in pipeline" || vErr["issues"] == nil {
		t.Errorf("export of an invalid pipeline: %v", vErr)
	}

	_, sErr := c.expect("POST", "/elyra/pipeline/schedule", frontendPipeline("", "", false, "flows/missing.py"), 400)
	if sErr["message"] != "Errors found in pipeline" || !strings.Contains(fmt.Sprint(sErr["issues"]), "invalidFilePath") {
		t.Errorf("schedule of an invalid pipeline: %v", sErr)
	}
	// Local runtime: runtime_config empty (and the pre-3.3 runtime-config key naming "local").
	for _, legacy := range []bool{false, true} {
		rc := ""
		if legacy {
			rc = "local"
		}
		start := time.Now()
		_, sched := c.expect("POST", "/elyra/pipeline/schedule", frontendPipeline(rc, "", legacy, "flows/hello.py"), 200)
		answered := time.Since(start)
		checkLocalSchedule(t, f, sched)
		t.Logf("local schedule (legacy key %v): answered in %v, run followed to its end in %v", legacy,
			answered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	return c
}

// checkLocalSchedule checks a local schedule answer, then follows the run's live log through
// kfbridge's websocket and opens its log panel, both at the URLs the answer gives.
func checkLocalSchedule(t *testing.T, f elyraFlow, sched map[string]any) {
	t.Helper()
	id, _ := sched["kfbridge_run_id"].(string)
	if id == "" || sched["run_id"] != id || sched["platform"] != "LOCAL" {
		t.Fatalf("schedule answer: %v", sched)
	}
	if want := f.root + "/#/runs/" + id; sched["run_url"] != want {
		t.Errorf("run_url %v, want %s", sched["run_url"], want)
	}
	panel := f.root + "/panel.html#run=" + id
	if sched["log_panel_url"] != panel {
		t.Errorf("log_panel_url %v, want %s", sched["log_panel_url"], panel)
	}
	if p, _ := sched["object_storage_path"].(string); !strings.HasSuffix(p, id) || sched["object_storage_url"] == "" {
		t.Errorf("object storage: %v %v", sched["object_storage_url"], sched["object_storage_path"])
	}
	final, text := followRunLog(t, f, id)
	if final != runs.StatusSucceeded || !strings.Contains(strings.Join(text, "\n"), "hi from elyra") {
		t.Errorf("run %s ended %s with log %q", id, final, text)
	}
	// The panel page at the URL the answer gave (the fragment stays in the browser).
	req, _ := http.NewRequest("GET", f.host+strings.SplitN(panel, "#", 2)[0], nil)
	f.header(req)
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	if presp.StatusCode != 200 || !bytes.Contains(bytes.ToLower(page), []byte("<html")) {
		t.Errorf("log panel %s: %d %.200s", panel, presp.StatusCode, page)
	}
}

// followRunLog reads the run's live log through kfbridge's run-scoped websocket, at the root the
// browser sees, until the run's final event; it returns the final status and the log lines.
func followRunLog(t *testing.T, f elyraFlow, id string) (string, []string) {
	t.Helper()
	// The live log, through kfbridge's own run-scoped websocket.
	wsURL := "ws" + strings.TrimPrefix(f.host, "http") + f.root + "/api/v1/runs/" + url.PathEscape(id) + "/logs"
	hdr := http.Header{}
	probe, _ := http.NewRequest("GET", f.host, nil)
	f.header(probe)
	for k, v := range probe.Header {
		hdr[k] = v
	}
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("log websocket %s: %v (status %d)", wsURL, err, status)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	var text []string
	final := ""
	for final == "" {
		var msg struct {
			Type   string          `json:"type"`
			Status string          `json:"status"`
			Lines  json.RawMessage `json:"lines"` // a count on step_end
		}
		if err := conn.ReadJSON(&msg); err != nil {
			t.Fatalf("log websocket: %v (lines so far %q)", err, text)
		}
		if msg.Type == "lines" {
			var lines []struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(msg.Lines, &lines); err != nil {
				t.Fatalf("lines frame: %v", err)
			}
			for _, l := range lines {
				text = append(text, l.Text)
			}
		}
		if msg.Type == "run" && runs.Terminal(msg.Status) {
			final = msg.Status
		}
	}
	return final, text
}

func noSecret(t *testing.T, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	for _, s := range []string{kfpSecret, cosSecret} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("a secret is in a response: %.300s", b)
		}
	}
}

func wantEnv(t *testing.T, file string, got map[string]any, want map[string]string) {
	t.Helper()
	env, _ := got["env_vars"].(map[string]any)
	if len(env) != len(want) {
		t.Errorf("%s: env_vars %v, want %v", file, env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s: env_vars[%s] = %v, want %q (all: %v)", file, k, env[k], v, env)
		}
	}
}

// startElyraServer starts kfbridge with a versitygw S3 store, so exports (KFP packages) work.
func startElyraServer(t *testing.T, ws string, extra ...string) *testServer {
	t.Helper()
	gw := s3test.Start(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	return startServerEnv(t, ws, env, append([]string{"--s3-endpoint", gw.Endpoint, "--s3-bucket", "elyra-e2e"}, extra...)...)
}

// TestElyraAPIDirect drives every Elyra route on kfbridge reached directly with its API token.
func TestElyraAPIDirect(t *testing.T) {
	ws := elyraWorkspace(t)
	s := startElyraServer(t, ws)
	f := elyraFlow{host: s.URL, root: "", elyraBase: "/elyra", jupyterBase: "/", srv: s,
		header: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+s.Token) }}
	c := runElyraFlow(t, f)
	if u := c.uncovered(); len(u) > 0 {
		t.Errorf("operations of the contract the flow did not exercise: %v", u)
	}
	// Without the token, Elyra-shaped 401.
	c.header = func(*http.Request) {}
	c.expect("GET", "/elyra/metadata/runtimes", nil, 401)
	// A method a route does not take, and an unknown path: Elyra-shaped too.
	for _, rq := range []struct {
		method, path string
		want         int
	}{{"DELETE", "/elyra/pipeline/schedule", 405}, {"GET", "/elyra/no/such/route", 404}} {
		resp, body := s.do(t, rq.method, rq.path, nil, s.auth())
		var v any
		if resp.StatusCode != rq.want || json.Unmarshal(body, &v) != nil || elyraErrorSchema.VisitJSON(v) != nil {
			t.Errorf("%s %s: %d %s, want %d in Elyra's error shape", rq.method, rq.path, resp.StatusCode, body, rq.want)
		}
	}
}

// tornadoXSRF builds a tornado version-2 XSRF value for token with the given mask.
func tornadoXSRF(token, mask []byte) string {
	masked := make([]byte, len(token))
	for i := range token {
		masked[i] = token[i] ^ mask[i%len(mask)]
	}
	return "2|" + hex.EncodeToString(mask) + "|" + hex.EncodeToString(masked) + "|1764331200"
}

// jupyterProxy stands in for Jupyter + jupyter-server-proxy: it authenticates the user with
// Jupyter's token (as Jupyter does before proxying), and mounts kfbridge at /user/alice/elyra/
// with the prefix stripped (absolute_url False) and X-Forwarded-Prefix set.
func jupyterProxy(t *testing.T, backend, jupyterToken string) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(backend)
	const prefix = "/user/alice/elyra"
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		// jupyter-server-proxy passes the browser's Host on, so the browser's Origin matches it.
		pr.Out.Host = pr.In.Host
		pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, prefix)
		pr.Out.URL.RawPath = ""
		if pr.Out.URL.Path == "" {
			pr.Out.URL.Path = "/"
		}
		pr.Out.Header.Set("X-Forwarded-Prefix", prefix)
		pr.Out.Header.Set("X-Forwarded-Context", prefix)
	}}
	mux := http.NewServeMux()
	// Jupyter's login: sets its session cookie (what a browser carries instead of the header).
	mux.HandleFunc("/user/alice/login", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != jupyterToken {
			http.Error(w, "Jupyter: wrong token", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "jupyter-session", Value: jupyterToken, Path: "/user/alice/", HttpOnly: true})
		http.Redirect(w, r, r.URL.Query().Get("next"), http.StatusFound)
	})
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		session, _ := r.Cookie("jupyter-session")
		if r.Header.Get("Authorization") != "token "+jupyterToken && (session == nil || session.Value != jupyterToken) {
			http.Error(w, "Jupyter: not authenticated", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestElyraAPIBehindJupyterProxy runs the whole flow as Elyra's frontend does inside JupyterLab:
// through a proxy that mounts kfbridge at /user/alice/elyra/, kfbridge trusting Jupyter's
// authentication (--trust-proxy-auth) and checking Jupyter's XSRF header against its cookie.
func TestElyraAPIBehindJupyterProxy(t *testing.T) {
	ws := elyraWorkspace(t)
	s := startElyraServer(t, ws, "--trust-proxy-auth")
	const jupyterToken = "jupyter-token-abc"
	proxy := jupyterProxy(t, s.URL, jupyterToken)
	xsrf := []byte("0123456789abcdef0123456789abcdef")
	// Cookie and header hold the same token under different masks, as tornado renders them.
	cookie := tornadoXSRF(xsrf, []byte{1, 2, 3, 4})
	header := tornadoXSRF(xsrf, []byte{9, 8, 7, 6})
	jupyter := func(r *http.Request) {
		r.Header.Set("Authorization", "token "+jupyterToken) // what JupyterLab's ServerConnection sends
		r.AddCookie(&http.Cookie{Name: "_xsrf", Value: cookie})
		r.Header.Set("X-XSRFToken", header)
	}
	f := elyraFlow{host: proxy.URL, root: "/user/alice/elyra", elyraBase: "/user/alice/elyra", jupyterBase: "/user/alice/", srv: s, header: jupyter}
	if u := runElyraFlow(t, f).uncovered(); len(u) > 0 {
		t.Errorf("operations of the contract the flow did not exercise: %v", u)
	}

	c := newElyraClient(t, proxy.URL+"/user/alice", func(r *http.Request) {
		r.Header.Set("Authorization", "token "+jupyterToken)
		r.AddCookie(&http.Cookie{Name: "_xsrf", Value: cookie})
	})
	// A state change without Jupyter's XSRF header is refused (a foreign page cannot read the cookie).
	c.expect("POST", "/elyra/pipeline/validate", frontendPipeline("", "", false, "flows/hello.py"), 403)
	c.header = func(r *http.Request) {
		r.Header.Set("Authorization", "token "+jupyterToken)
		r.AddCookie(&http.Cookie{Name: "_xsrf", Value: cookie})
		r.Header.Set("X-XSRFToken", tornadoXSRF([]byte("another-token-entirely-000000000"), []byte{1, 2, 3, 4}))
	}
	c.expect("POST", "/elyra/pipeline/validate", frontendPipeline("", "", false, "flows/hello.py"), 403)
	// Reads need no XSRF token.
	c.expect("GET", "/elyra/pipeline/runtimes/types", nil, 200)

	// kfbridge's own UI under the same prefix: its session says "authenticated" and hands out
	// its CSRF token, which then authorizes its state changes in place of Jupyter's header.
	get := func(path string, hdr map[string]string, method string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, proxy.URL+"/user/alice/elyra"+path, nil)
		req.Header.Set("Authorization", "token "+jupyterToken)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	_, body := get("/api/v1/session", nil, "GET")
	var sess struct {
		Authenticated bool   `json:"authenticated"`
		CSRFToken     string `json:"csrf_token"`
		CSRFHeader    string `json:"csrf_header"`
	}
	if err := json.Unmarshal(body, &sess); err != nil || !sess.Authenticated || sess.CSRFToken == "" || sess.CSRFHeader == "" {
		t.Fatalf("session behind the proxy: %s", body)
	}
	_, body = get("/api/v1/runs", nil, "GET")
	var list struct {
		Runs []struct {
			ID string `json:"id"`
		} `json:"runs"`
	}
	if json.Unmarshal(body, &list) != nil || len(list.Runs) == 0 {
		t.Fatalf("runs behind the proxy: %s", body)
	}
	cancelPath := "/api/v1/runs/" + list.Runs[0].ID + ":cancel"
	if resp, b := get(cancelPath, nil, "POST"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cancel without any CSRF header: %d %s, want 403", resp.StatusCode, b)
	}
	if resp, b := get(cancelPath, map[string]string{sess.CSRFHeader: sess.CSRFToken}, "POST"); resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("cancel with kfbridge's CSRF header: %d %s", resp.StatusCode, b)
	}
}

// TestTrustProxyAuthNeedsLoopback: the opt-in is refused on an address others can reach.
func TestTrustProxyAuthNeedsLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8765"} {
		cmd := exec.Command(filepath.Join(binDir, "kfbridge"), "serve", "--addr", addr, "--trust-proxy-auth",
			"--workspace", t.TempDir(), "--data-dir", t.TempDir(), "--token", "x")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "loopback") {
			t.Errorf("--trust-proxy-auth --addr %s: err=%v\n%s", addr, err, out)
		}
	}
}
