package argoemu

import (
	"strings"
	"testing"
)

// Ensure Argo expressions resolve from template inputs, workflow parameters and the workflow's
// identity, and unknown ones stay as they are (Argo would fail the pod, not silently blank them).
func TestArgoSubst(t *testing.T) {
	in := map[string]string{"epochs": "7"}
	wf := map[string]string{"note": "hi"}
	got := argoSubst("--run-id {{workflow.uid}} {{ inputs.parameters.epochs }} {{workflow.parameters.note}} {{workflow.name}} {{inputs.parameters.nope}}", in, wf, "uid-1", "wf-abc")
	if want := "--run-id uid-1 7 hi wf-abc {{inputs.parameters.nope}}"; got != want {
		t.Errorf("argoSubst = %q, want %q", got, want)
	}
}

// Ensure IR parameter values are rendered as the KFP launcher renders them.
func TestIRValue(t *testing.T) {
	for v, want := range map[any]string{"s": "s", 3.0: "3", 0.25: "0.25", true: "true", nil: ""} {
		if got := irValue(v); got != want {
			t.Errorf("irValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// Ensure a missing Secret or key fails like the kubelet's CreateContainerConfigError.
func TestSecret(t *testing.T) {
	e := &Emulator{Secrets: map[string]map[string]string{"s3": {"AWS_ACCESS_KEY_ID": "k"}}}
	if v, err := e.secret("s3", "AWS_ACCESS_KEY_ID"); err != nil || v != "k" {
		t.Errorf("secret = %q, %v", v, err)
	}
	for _, c := range [][2]string{{"s3", "AWS_SECRET_ACCESS_KEY"}, {"other", "x"}} {
		if _, err := e.secret(c[0], c[1]); err == nil || !strings.Contains(err.Error(), "CreateContainerConfigError") {
			t.Errorf("secret(%s, %s): %v, want CreateContainerConfigError", c[0], c[1], err)
		}
	}
}
