package kfp_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
	"sigs.k8s.io/yaml"
)

// A two-step Argo workflow (step-b after step-a) with one parameter, as the v1 compiler emits.
const argoYAML = `apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: hello-
  annotations:
    pipelines.kubeflow.org/kfp_sdk_version: 1.8.22
spec:
  entrypoint: hello
  serviceAccountName: pipeline-runner
  arguments:
    parameters:
    - name: msg
      value: hi
  templates:
  - name: hello
    dag:
      tasks:
      - name: step-a
        template: run-a
      - name: step-b
        template: run-b
        dependencies: [step-a]
  - name: run-a
    container:
      image: busybox
      command: [sh, -c]
      args: ["echo a"]
  - name: run-b
    container:
      image: busybox
      command: [sh, -c]
      args: ["echo b"]
`

// The same pipeline as KFP IR.
const irJSON = `{
 "pipelineInfo": {"name": "hello"},
 "schemaVersion": "2.1.0",
 "sdkVersion": "kfbridge-test",
 "root": {
  "inputDefinitions": {"parameters": {"msg": {"parameterType": "STRING", "defaultValue": "hi"}}},
  "dag": {"tasks": {
   "step-a": {"taskInfo": {"name": "step-a"}, "componentRef": {"name": "comp-step-a"}},
   "step-b": {"taskInfo": {"name": "step-b"}, "componentRef": {"name": "comp-step-b"}, "dependentTasks": ["step-a"]}
  }}
 },
 "components": {"comp-step-a": {"executorLabel": "exec-step-a"}, "comp-step-b": {"executorLabel": "exec-step-b"}},
 "deploymentSpec": {"executors": {
  "exec-step-a": {"container": {"image": "busybox", "command": ["sh", "-c"], "args": ["echo a"]}},
  "exec-step-b": {"container": {"image": "busybox", "command": ["sh", "-c"], "args": ["echo b"]}}
 }}
}`

// pkg returns the package the given API version uploads (Argo YAML for v1, IR for v2).
func pkg(version string) []byte {
	if version == kfp.V1Beta1 {
		return []byte(argoYAML)
	}
	return []byte(irJSON)
}

// inlineRun fills the inline source of a run for the version.
func inlineRun(t *testing.T, version string, r *kfp.RunRequest) {
	t.Helper()
	if version == kfp.V1Beta1 {
		js, err := yaml.YAMLToJSON([]byte(argoYAML))
		if err != nil {
			t.Fatal(err)
		}
		r.WorkflowManifest = js
		return
	}
	r.PipelineSpec = json.RawMessage(irJSON)
}

// fastRetry keeps retry tests quick while still exercising the backoff path.
var fastRetry = kfp.RetryPolicy{MaxAttempts: 4, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, LookupDelay: 10 * time.Millisecond}

func newClient(t *testing.T, base string, opts kfp.Options) *kfp.Client {
	t.Helper()
	if opts.Retry.MaxAttempts == 0 {
		opts.Retry = fastRetry
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	c, err := kfp.New(base, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitDone polls GetRunStatus until the run is terminal.
func waitDone(t *testing.T, c *kfp.Client, runID string) *kfp.RunStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		st, err := c.GetRunStatus(ctx, runID)
		if err != nil {
			t.Fatalf("GetRunStatus: %v", err)
		}
		if st.State.Terminal() {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s did not finish: last state %s", runID, st.State)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func versions() []string { return []string{kfp.V1Beta1, kfp.V2Beta1} }

// noUserIDHeader asserts that no request the fake saw carried kubeflow-userid.
func noUserIDHeader(t *testing.T, s *kfptest.Server) {
	t.Helper()
	reqs := s.Requests()
	if len(reqs) == 0 {
		t.Fatal("fake saw no requests")
	}
	for _, r := range reqs {
		if len(r.Header.Values("kubeflow-userid")) > 0 {
			t.Errorf("%s %s carried kubeflow-userid", r.Method, r.Path)
		}
	}
}
