package kfptest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

const workflowYAML = `apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: p, value: x}]}
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: t}
  - name: t
    container: {image: busybox, command: [echo]}
`

const workflowJSON = `{"apiVersion":"argoproj.io/v1alpha1","kind":"Workflow","metadata":{"generateName":"w-"},
"spec":{"entrypoint":"main","templates":[{"name":"main","dag":{"tasks":[{"name":"a","template":"t"}]}},
{"name":"t","container":{"image":"busybox","command":["echo"]}}]}}`

const irSpec = `{"pipelineInfo":{"name":"p"},"schemaVersion":"2.1.0","root":{"dag":{"tasks":{"a":{"taskInfo":{"name":"a"},"componentRef":{"name":"c"}}}}},
"components":{"c":{"executorLabel":"e"}},"deploymentSpec":{"executors":{"e":{"container":{"image":"busybox"}}}}}`

// collector records violations instead of failing, for tests that send bad requests on purpose.
type collector struct {
	mu   sync.Mutex
	errs []error
}

func (c *collector) add(err error) { c.mu.Lock(); c.errs = append(c.errs, err); c.mu.Unlock() }
func (c *collector) n() int        { c.mu.Lock(); defer c.mu.Unlock(); return len(c.errs) }

func do(t *testing.T, method, url, ctype string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func upload(t *testing.T, url, field, filename string, content []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile(field, filename)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(content)
	mw.Close()
	return do(t, "POST", url, mw.FormDataContentType(), buf.Bytes())
}

func TestSwaggerViolationsAreCaught(t *testing.T) {
	col := &collector{}
	s := kfptest.NewServer(t, kfptest.Options{OnViolation: col.add})
	cases := []struct {
		name, method, path, ctype, body string
	}{
		{"camelCase field", "POST", "/apis/v2beta1/runs", "application/json", `{"displayName":"x"}`},
		{"v1 field on v2", "POST", "/apis/v2beta1/experiments", "application/json", `{"name":"x"}`},
		{"bad enum", "POST", "/apis/v1beta1/experiments", "application/json", `{"name":"x","resource_references":[{"key":{"type":"PROFILE","id":"a"},"relationship":"OWNER"}]}`},
		{"wrong type", "POST", "/apis/v1beta1/runs", "application/json", `{"name":"x","pipeline_spec":{"workflow_manifest":{"kind":"Workflow"}}}`},
		{"unknown path", "GET", "/apis/v1beta1/nothing", "", ``},
		{"v1 terminate form on v2", "POST", "/apis/v2beta1/runs/abc/terminate", "", ``},
		{"bad query type", "GET", "/apis/v1beta1/runs?page_size=ten", "", ``},
		{"json upload", "POST", "/apis/v1beta1/pipelines/upload", "application/json", `{}`},
	}
	for i, tc := range cases {
		status, body := do(t, tc.method, s.URL+tc.path, tc.ctype, []byte(tc.body))
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s)", tc.name, status, body)
		}
		if col.n() != i+1 {
			t.Fatalf("%s: violation not recorded (have %d)", tc.name, col.n())
		}
	}
	// A multipart upload whose part is not named uploadfile violates the swagger too.
	status, _ := upload(t, s.URL+"/apis/v1beta1/pipelines/upload", "file", "p.yaml", []byte(workflowYAML))
	if status != http.StatusBadRequest || col.n() != len(cases)+1 {
		t.Fatalf("wrong part name: status %d, violations %d", status, col.n())
	}
	// And a valid request is not a violation.
	if status, body := do(t, "GET", s.URL+"/apis/v1beta1/healthz", "", nil); status != 200 || col.n() != len(cases)+1 {
		t.Fatalf("healthz: %d %s", status, body)
	}
}

func TestKubeflowUserIDHeaderIsViolation(t *testing.T) {
	col := &collector{}
	s := kfptest.NewServer(t, kfptest.Options{OnViolation: col.add})
	req, _ := http.NewRequest("GET", s.URL+"/apis/v1beta1/healthz", nil)
	req.Header.Set("kubeflow-userid", "alice@example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if col.n() != 1 || !strings.Contains(col.errs[0].Error(), "kubeflow-userid") {
		t.Fatalf("violations: %v", col.errs)
	}
}

func TestUploadRules(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{})
	for _, v := range []string{"v1beta1", "v2beta1"} {
		u := s.URL + "/apis/" + v + "/pipelines/upload?name="
		cases := []struct {
			name, filename string
			content        []byte
			status         int
			msg            string
		}{
			{"ok argo", "a.yaml", []byte(workflowYAML), 200, ""},
			{"ok ir", "b.yaml", []byte(irSpec), 200, ""},
			{"txt suffix", "c.txt", []byte(workflowYAML), 400, "Unexpected pipeline file format"},
			{"argo v1beta1", "d.yaml", []byte(strings.Replace(workflowYAML, "v1alpha1", "v1beta9", 1)), 400, "argoproj.io/v1alpha1"},
			{"ir schema 2.0", "e.yaml", []byte(strings.Replace(irSpec, "2.1.0", "2.0.0", 1)), 400, "schemaVersion"},
			{"ir no name", "f.yaml", []byte(strings.Replace(irSpec, `"name":"p"`, `"name":""`, 1)), 400, "pipelineInfo.name"},
			{"ir unknown field", "g.yaml", []byte(strings.Replace(irSpec, `"root"`, `"extra":1,"root"`, 1)), 400, "unknown field"},
			{"unknown format", "h.yaml", []byte("a: 1\n"), 400, "unknown template format"},
			{"lint: missing template", "i.yaml", []byte(strings.Replace(workflowYAML, "template: t}", "template: nope}", 1)), 400, "not found"},
			{"too large", "j.yaml", append([]byte(workflowYAML+"#"), bytes.Repeat([]byte("x"), 32<<20)...), 400, "too large"},
			{"duplicate", "a.yaml", []byte(workflowYAML), map[string]int{"v1beta1": 500, "v2beta1": 409}[v], "already exist"},
		}
		for _, tc := range cases {
			name := v + "-" + strings.TrimSuffix(tc.filename, ".yaml")
			status, body := upload(t, u+name, "uploadfile", tc.filename, tc.content)
			if status != tc.status || !strings.Contains(body, tc.msg) {
				t.Errorf("%s %s: %d %s", v, tc.name, status, truncate(body))
			}
			if tc.status >= 400 && !strings.Contains(body, `"error_message"`) {
				t.Errorf("%s %s: upload errors use the bare api.Error shape: %s", v, tc.name, truncate(body))
			}
		}
	}
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300]
	}
	return s
}

func TestRunRules(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{})
	yamlManifest, _ := json.Marshal(map[string]any{"name": "r", "pipeline_spec": map[string]any{"workflow_manifest": workflowYAML}})
	status, body := do(t, "POST", s.URL+"/apis/v1beta1/runs", "application/json", yamlManifest)
	if status != 400 || !strings.Contains(body, "Invalid argo workflow format") {
		t.Errorf("YAML workflow_manifest: %d %s", status, body)
	}
	jsonManifest, _ := json.Marshal(map[string]any{"name": "r", "pipeline_spec": map[string]any{"workflow_manifest": workflowJSON}})
	if status, body := do(t, "POST", s.URL+"/apis/v1beta1/runs", "application/json", jsonManifest); status != 200 {
		t.Errorf("JSON workflow_manifest: %d %s", status, body)
	}
	extra, _ := json.Marshal(map[string]any{"name": "r", "pipeline_spec": map[string]any{"workflow_manifest": workflowJSON,
		"parameters": []any{map[string]any{"name": "undeclared", "value": "1"}}}})
	if status, body := do(t, "POST", s.URL+"/apis/v1beta1/runs", "application/json", extra); status != 400 || !strings.Contains(body, "undeclared") {
		t.Errorf("undeclared parameter: %d %s", status, body)
	}
	noName := `{"pipeline_spec":{"workflow_manifest":` + fmt.Sprintf("%q", workflowJSON) + `}}`
	if status, _ := do(t, "POST", s.URL+"/apis/v1beta1/runs", "application/json", []byte(noName)); status != 400 {
		t.Errorf("run without name: %d", status)
	}
	// v2: display_name required; inline IR accepted.
	if status, _ := do(t, "POST", s.URL+"/apis/v2beta1/runs", "application/json", []byte(`{"pipeline_spec":`+irSpec+`}`)); status != 400 {
		t.Errorf("v2 run without display_name: %d", status)
	}
	if status, body := do(t, "POST", s.URL+"/apis/v2beta1/runs", "application/json", []byte(`{"display_name":"r","pipeline_spec":`+irSpec+`}`)); status != 200 {
		t.Errorf("v2 inline run: %d %s", status, body)
	}
	// Single-user: runs without experiment land in "Default".
	if len(s.Runs()) != 2 || s.Runs()[0].ExperimentID == "" || s.Runs()[0].ExperimentID != s.Runs()[1].ExperimentID {
		t.Errorf("default experiment not used: %+v", s.Runs())
	}
}

func TestMultiUserRules(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
	single := kfptest.NewServer(t, kfptest.Options{})
	cases := []struct {
		name         string
		srv          *kfptest.Server
		method, path string
		body         string
		status       int
		msg          string
	}{
		{"v1 experiment without namespace", s, "POST", "/apis/v1beta1/experiments", `{"name":"e"}`, 400, "namespace"},
		{"v1 experiment with namespace", s, "POST", "/apis/v1beta1/experiments", `{"name":"e","resource_references":[{"key":{"type":"NAMESPACE","id":"alice"},"relationship":"OWNER"}]}`, 200, ""},
		{"v1 duplicate experiment", s, "POST", "/apis/v1beta1/experiments", `{"name":"e","resource_references":[{"key":{"type":"NAMESPACE","id":"alice"},"relationship":"OWNER"}]}`, 409, "already exists"},
		{"v1 same name other namespace", s, "POST", "/apis/v1beta1/experiments", `{"name":"e","resource_references":[{"key":{"type":"NAMESPACE","id":"bob"},"relationship":"OWNER"}]}`, 200, ""},
		{"v1 list experiments without namespace", s, "GET", "/apis/v1beta1/experiments", "", 400, "namespace"},
		{"v1 list runs without filter", s, "GET", "/apis/v1beta1/runs", "", 400, "namespace or experiment"},
		{"v1 run without experiment", s, "POST", "/apis/v1beta1/runs", `{"name":"r","pipeline_spec":{"workflow_manifest":` + fmt.Sprintf("%q", workflowJSON) + `}}`, 400, "Job has no experiment"},
		{"v2 experiment without namespace", s, "POST", "/apis/v2beta1/experiments", `{"display_name":"e2"}`, 400, "namespace"},
		{"v2 list experiments without namespace", s, "GET", "/apis/v2beta1/experiments", "", 400, "namespace"},
		{"v2 run without experiment", s, "POST", "/apis/v2beta1/runs", `{"display_name":"r","pipeline_spec":` + irSpec + `}`, 400, "experiment"},
		{"single-user experiment with refs", single, "POST", "/apis/v1beta1/experiments", `{"name":"e","resource_references":[{"key":{"type":"NAMESPACE","id":"alice"},"relationship":"OWNER"}]}`, 400, "single-user"},
	}
	for _, tc := range cases {
		status, body := do(t, tc.method, tc.srv.URL+tc.path, "application/json", []byte(tc.body))
		if status != tc.status || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
}

func TestExecutorIsPluggable(t *testing.T) {
	var got []kfptest.FakeStep
	var mu sync.Mutex
	s := kfptest.NewServer(t, kfptest.Options{Executor: kfptest.ExecutorFunc(func(ctx context.Context, run *kfptest.FakeRun) {
		mu.Lock()
		got = append(got, run.Steps...)
		mu.Unlock()
		for _, st := range run.Steps {
			code := 0
			run.SetStep(st.Name, kfptest.StepUpdate{Phase: kfptest.PhaseRunning})
			run.SetStep(st.Name, kfptest.StepUpdate{Phase: kfptest.PhaseSucceeded, ExitCode: &code})
		}
	})})
	body, _ := json.Marshal(map[string]any{"name": "r", "pipeline_spec": map[string]any{"workflow_manifest": workflowJSON}})
	status, resp := do(t, "POST", s.URL+"/apis/v1beta1/runs", "application/json", body)
	if status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	run := s.Runs()[0]
	<-run.Done()
	if run.Phase() != kfptest.PhaseSucceeded {
		t.Fatalf("phase %s", run.Phase())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Name != "a" || got[0].Image != "busybox" || got[0].Command[0] != "echo" || got[0].Template != "t" {
		t.Fatalf("steps given to the executor: %+v", got)
	}
	if run.Workflow == nil || run.WorkflowName == "" || !strings.HasPrefix(run.WorkflowName, "w-") {
		t.Fatalf("workflow not stored: %q", run.WorkflowName)
	}
}
