package kfp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseErrorBodyShapes(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		msg        string
		kind       error
	}{
		{"v1 grpc-gateway", `{"error":"Invalid input error: Job has no experiment.","message":"Invalid input error: Job has no experiment.","code":3,
		  "details":[{"@type":"type.googleapis.com/api.Error","error_message":"Job has no experiment.","error_details":"Invalid input error: Job has no experiment."}]}`,
			400, "Job has no experiment.", ErrInvalid},
		{"v2 googleRpcStatus", `{"code":5,"message":"Run abc not found","details":[]}`, 404, "Run abc not found", ErrNotFound},
		{"bare upload 1.x duplicate", `{"error_message":"Failed to create a pipeline: The name x already exist. Please specify a new name.","error_details":"..."}`,
			500, "already exist", ErrConflict},
		{"v2 conflict", `{"code":6,"message":"already exists"}`, 409, "already exists", ErrConflict},
		{"grpc code wins over status", `{"code":7,"message":"denied"}`, 500, "denied", ErrForbidden},
		{"unauthenticated", `{"code":16,"message":"no token"}`, 401, "no token", ErrUnauthorized},
		{"plain 503", `{"code":14,"message":"upstream connect error"}`, 503, "upstream connect error", ErrUpstream},
	}
	for _, tc := range cases {
		msg, details, code, ok := parseErrorBody([]byte(tc.body))
		if !ok || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: msg=%q ok=%v", tc.name, msg, ok)
		}
		if kind := classify(tc.status, code, msg, details); kind != tc.kind {
			t.Errorf("%s: kind %v, want %v", tc.name, kind, tc.kind)
		}
	}
	if _, _, _, ok := parseErrorBody([]byte("<html>sign in</html>")); ok {
		t.Error("HTML parsed as a KFP error")
	}
	e := &APIError{Op: "create run", Method: "POST", Endpoint: "http://kfp/apis/v1beta1/runs", StatusCode: 400, Message: "bad", Kind: ErrInvalid, Attempts: 1}
	if !errors.Is(e, ErrInvalid) || errors.Is(e, ErrNotFound) {
		t.Error("errors.Is does not follow Kind")
	}
	if got := e.Error(); got != "kfp: create run: POST http://kfp/apis/v1beta1/runs: 400 Bad Request: bad" {
		t.Errorf("Error() = %q", got)
	}
}

func TestDecodeWorkflowManifest(t *testing.T) {
	nodes := map[string]ArgoNode{
		"wf-1": {ID: "wf-1", Name: "wf", DisplayName: "wf", Type: "DAG", Phase: "Failed", Children: []string{"wf-2", "wf-3"}},
		"wf-2": {ID: "wf-2", Name: "wf.a", DisplayName: "a", Type: "Pod", TemplateName: "run-a", Phase: "Failed",
			Message: "Error (exit code 2)", Outputs: &NodeOutputs{ExitCode: ptr("2")},
			StartedAt: ArgoTime{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, FinishedAt: ArgoTime{time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)}},
		"wf-3": {ID: "wf-3", Name: "wf.b", DisplayName: "b", Type: "Pod", TemplateName: "run-b", Phase: "Omitted"},
	}
	compressed, err := CompressNodes(nodes)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "wf"},
		"status": map[string]any{"phase": "Failed", "startedAt": "2026-01-01T00:00:00Z", "finishedAt": nil, "nodes": nodes}})
	packed, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "wf"},
		"status": map[string]any{"phase": "Failed", "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "", "compressedNodes": compressed}})
	// workflow_manifest travels as a JSON string inside the run detail JSON: decode both layers.
	for name, manifest := range map[string][]byte{"nodes": plain, "compressedNodes": packed} {
		detail, _ := json.Marshal(map[string]any{"run": map[string]any{"id": "r", "status": "Failed"},
			"pipeline_runtime": map[string]any{"workflow_manifest": string(manifest)}})
		var d v1RunDetail
		if err := json.Unmarshal(detail, &d); err != nil {
			t.Fatal(err)
		}
		wf, err := DecodeWorkflowManifest(d.PipelineRuntime.WorkflowManifest)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st := statusFromWorkflow("r", d.Run.Status, wf)
		if st.State != PhaseFailed || len(st.Steps) != 2 || len(st.AllNodes) != 3 {
			t.Fatalf("%s: status %+v", name, st)
		}
		a, b := st.Step("a"), st.Step("run-b")
		if a == nil || a.ExitCode == nil || *a.ExitCode != 2 || a.Phase != PhaseFailed || a.StartedAt.IsZero() || a.FinishedAt.Sub(a.StartedAt) != time.Minute {
			t.Fatalf("%s: step a %+v", name, a)
		}
		if b == nil || b.Phase != PhaseSkipped || b.ExitCode != nil {
			t.Fatalf("%s: step b %+v", name, b)
		}
	}
	if _, err := DecodeWorkflowManifest(`{"status":{"compressedNodes":"!!!"}}`); err == nil {
		t.Error("bad compressedNodes accepted")
	}
	if wf, err := DecodeWorkflowManifest(""); wf != nil || err != nil {
		t.Error("empty manifest should be nil, nil")
	}
	off := statusFromWorkflow("r", "Running", &Workflow{Status: WorkflowStatus{Phase: "Running", OffloadNodeStatusVersion: "v1"}})
	if !off.NodesUnavailable {
		t.Error("offloaded nodes not flagged")
	}
}

func TestPhaseNormalization(t *testing.T) {
	for in, want := range map[string]Phase{"": PhasePending, "Pending": PhasePending, "Running": PhaseRunning, "Succeeded": PhaseSucceeded,
		"Failed": PhaseFailed, "Error": PhaseFailed, "Skipped": PhaseSkipped, "Omitted": PhaseSkipped, "Terminating": PhaseCancelling} {
		if got := normalizeArgoPhase(in); got != want {
			t.Errorf("argo %q -> %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]Phase{"PENDING": PhasePending, "PAUSED": PhasePending, "RUNNING": PhaseRunning, "SUCCEEDED": PhaseSucceeded,
		"FAILED": PhaseFailed, "SKIPPED": PhaseSkipped, "CANCELING": PhaseCancelling, "CANCELED": PhaseCancelled, "RUNTIME_STATE_UNSPECIFIED": PhasePending} {
		if got := normalizeV2State(in); got != want {
			t.Errorf("v2 %q -> %s, want %s", in, got, want)
		}
	}
	// A v1 run stopped by terminate ends Failed with Argo's deadline message: cancelled.
	st := statusFromWorkflow("r", "Failed", &Workflow{Status: WorkflowStatus{Phase: "Failed", Message: "Max duration limit exceeded"}})
	if st.State != PhaseCancelled {
		t.Errorf("terminated v1 run: %s", st.State)
	}
}

func TestHTMLAnswerIsClearError(t *testing.T) {
	c, err := New("http://kfp.example", Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := attemptResult{status: 200, header: http.Header{"Content-Type": {"text/html"}}, body: []byte("<html>Kubeflow Central Dashboard</html>")}
	msg := notKFP(res, errors.New("invalid character '<'"))
	if !strings.Contains(msg, "/pipeline") || !strings.Contains(msg, "HTML") {
		t.Errorf("message %q", msg)
	}
	if _, err := New("ftp://x", Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad scheme: %v", err)
	}
	if _, err := New("http://x", Options{APIVersion: "v3"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad version: %v", err)
	}
	_ = c
}

func ptr(s string) *string { return &s }

func TestPodNameV2(t *testing.T) {
	n := ArgoNode{ID: "hello-abc-1234567", Name: "hello-abc.step-a", TemplateName: "run-a"}
	if got := podNameV2("hello-abc", n); got != "hello-abc-run-a-1234567" {
		t.Errorf("pod name %q", got)
	}
	if got := podNameV2("hello-abc", ArgoNode{ID: "hello-abc", Name: "hello-abc", TemplateName: "hello"}); got != "hello-abc" {
		t.Errorf("root pod name %q", got)
	}
}

// BenchmarkDecodeCompressedManifest decodes a 1000-node workflow whose nodes are compressed, the
// case kubeflow/kubeflow#4895 describes (large runs).
func BenchmarkDecodeCompressedManifest(b *testing.B) {
	nodes := map[string]ArgoNode{}
	code := "0"
	for i := 0; i < 1000; i++ {
		id := "wf-" + strings.Repeat("x", 3) + string(rune('a'+i%26)) + time.Duration(i).String()
		nodes[id] = ArgoNode{ID: id, Name: "wf.step", DisplayName: "step", Type: "Pod", TemplateName: "run", Phase: "Succeeded",
			Outputs: &NodeOutputs{ExitCode: &code}, StartedAt: ArgoTime{time.Now()}, FinishedAt: ArgoTime{time.Now()}}
	}
	c, err := CompressNodes(nodes)
	if err != nil {
		b.Fatal(err)
	}
	manifest, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "wf"}, "status": map[string]any{"phase": "Succeeded", "compressedNodes": c}})
	b.SetBytes(int64(len(manifest)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wf, err := DecodeWorkflowManifest(string(manifest))
		if err != nil || len(wf.Status.Nodes) != 1000 {
			b.Fatalf("%v %d", err, len(wf.Status.Nodes))
		}
		_ = statusFromWorkflow("r", "Succeeded", wf)
	}
}
