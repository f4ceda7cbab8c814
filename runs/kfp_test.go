package runs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
)

// Ensure each cos_auth_type maps to a compile credential mode that never carries keys, and that
// USER_CREDENTIALS without a Secret is refused with a message telling the user to set cos_secret.
func TestCOSCredentials(t *testing.T) {
	rc := func(auth, secret string) RuntimeConfig {
		return RuntimeConfig{Name: "k", Metadata: RuntimeMetadata{COSAuthType: auth, COSSecret: secret, COSUsername: "u", COSPassword: "password-1"}}
	}
	for _, c := range []struct {
		auth, secret string
		want         compile.Credentials
		err          string
	}{
		{COSAuthKubernetesSecret, "s3-keys", compile.Credentials{Mode: compile.CredentialsSecret, SecretName: "s3-keys"}, ""},
		{COSAuthKubernetesSecret, "", compile.Credentials{}, "needs cos_secret"},
		{COSAuthIRSA, "", compile.Credentials{Mode: compile.CredentialsIRSA}, ""},
		{COSAuthUserCredentials, "s3-keys", compile.Credentials{Mode: compile.CredentialsSecret, SecretName: "s3-keys"}, ""},
		{COSAuthUserCredentials, "", compile.Credentials{}, "set cos_secret"},
		{"", "", compile.Credentials{}, "set cos_secret"},
		{"PLAIN", "", compile.Credentials{}, "unknown cos_auth_type"},
	} {
		got, err := cosCredentials(rc(c.auth, c.secret))
		if c.err != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s/%q: err %v, want ErrInvalid mentioning %q", c.auth, c.secret, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s/%q: %+v, %v; want %+v", c.auth, c.secret, got, err, c.want)
		}
	}
}

// Ensure KFP names stay within KFP's 100 characters and keep the unique suffix whole.
func TestKFPName(t *testing.T) {
	long := strings.Repeat("p", 150)
	if n := kfpName(long, "20261128-120000-abcdef01"); len(n) != maxKFPName || !strings.HasSuffix(n, "-20261128-120000-abcdef01") {
		t.Errorf("kfpName(long, id) = %q (%d)", n, len(n))
	}
	if n := kfpName("short", "x"); n != "short-x" {
		t.Errorf("kfpName = %q", n)
	}
	if n := kfpName(long, ""); len(n) != maxKFPName {
		t.Errorf("kfpName(long) has %d characters", len(n))
	}
}

// Ensure the task names the watcher matches are the DAG task names each compiler emits; the Argo
// compiler reserves the pipeline's own name for its entrypoint, so a node labelled like the
// pipeline gets another task name there and not in IR.
func TestTaskNames(t *testing.T) {
	p := &pipeline.Pipeline{Name: "train", Nodes: []*pipeline.Node{
		{ID: "n1", Label: "train", Kind: pipeline.KindPython, Filename: "train.py", RuntimeImage: "python:3.11"},
		{ID: "n2", Label: "Eval Model", Kind: pipeline.KindPython, Filename: "eval.py", RuntimeImage: "python:3.11", Parents: []string{"n1"}},
	}}
	argo, err := TaskNames(p, FormatArgo)
	if err != nil {
		t.Fatal(err)
	}
	ir, err := TaskNames(p, FormatKFPv2)
	if err != nil {
		t.Fatal(err)
	}
	if ir["train"] != "n1" || ir["eval-model"] != "n2" || len(ir) != 2 {
		t.Errorf("IR task names = %v", ir)
	}
	if argo["train"] != "" || argo["eval-model"] != "n2" || len(argo) != 2 {
		t.Errorf("Argo task names = %v, want the node 'train' renamed away from the entrypoint", argo)
	}
}

type recReporter struct {
	mu  sync.Mutex
	got []string
}

func (r *recReporter) StepStatus(id, status string, code *int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := id + ":" + status
	if code != nil {
		s += ":" + strconv.Itoa(*code)
	}
	r.got = append(r.got, s)
}

// Ensure the watcher reports each change once, reports running before the end of a step it never
// saw running (that starts the log tail), does not invent running for skipped steps, and maps a
// failed step's exit code.
func TestWatcherApply(t *testing.T) {
	rep := &recReporter{}
	w := &watcher{tasks: map[string]string{"a": "A", "b": "B", "c": "C"}, rep: rep, seen: map[string]stepSeen{}}
	three := 3
	poll := func(steps ...kfp.StepStatus) bool {
		return w.apply(&kfp.RunStatus{State: kfp.PhaseRunning, Steps: steps})
	}
	if !poll(kfp.StepStatus{DisplayName: "a", Phase: kfp.PhaseRunning}, kfp.StepStatus{DisplayName: "x", Phase: kfp.PhaseRunning}) {
		t.Error("first poll reported no change")
	}
	if poll(kfp.StepStatus{DisplayName: "a", Phase: kfp.PhaseRunning}) {
		t.Error("an unchanged poll reported a change")
	}
	poll(kfp.StepStatus{DisplayName: "a", Phase: kfp.PhaseFailed, ExitCode: &three},
		kfp.StepStatus{DisplayName: "b", Phase: kfp.PhaseSucceeded},
		kfp.StepStatus{DisplayName: "c", Phase: kfp.PhaseSkipped})
	want := "A:running A:failed:3 B:running B:succeeded:0 C:skipped"
	if got := strings.Join(rep.got, " "); got != want {
		t.Errorf("reports = %s\nwant      %s", got, want)
	}
}

// Ensure an Idempotency-Key returns the stored answer for the same request, refuses a different
// request, makes a concurrent retry wait for the first, lets a retry after a failure try again,
// and forgets answers after the TTL.
func TestIdempotencyStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewIdempotencyStore(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	prev, c, err := s.Begin(ctx, "scope", "k1", "fp1")
	if err != nil || prev != nil || c == nil {
		t.Fatalf("first Begin: %v %v %v", prev, c, err)
	}
	// A concurrent retry waits until the first commits, then gets its answer.
	got := make(chan *IdempotentAnswer, 1)
	go func() {
		a, _, err := s.Begin(ctx, "scope", "k1", "fp1")
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	select {
	case <-got:
		t.Fatal("a concurrent retry did not wait for the first request")
	case <-time.After(100 * time.Millisecond):
	}
	if err := c.Commit(201, []byte("{\"id\":\"r1\"}\n"), "r1"); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a == nil || a.Status != 201 || string(a.Body) != "{\"id\":\"r1\"}\n" || a.RunID != "r1" {
		t.Fatalf("retry got %+v", a)
	}
	if _, _, err := s.Begin(ctx, "scope", "k1", "fp2"); !errors.Is(err, ErrConflict) {
		t.Errorf("same key, different request: %v, want ErrConflict", err)
	}
	if a, c, _ := s.Begin(ctx, "other-scope", "k1", "fp1"); a != nil || c == nil {
		t.Error("a key of another credential saw this credential's answer")
	} else {
		c.Release()
	}
	// A failed request stores nothing.
	_, c2, _ := s.Begin(ctx, "scope", "k2", "fp")
	c2.Release()
	if a, c3, _ := s.Begin(ctx, "scope", "k2", "fp"); a != nil || c3 == nil {
		t.Error("a retry after a failure was not let through")
	} else {
		c3.Release()
	}
	// A new store on the same directory keeps answers; after the TTL they are gone.
	s2, _ := NewIdempotencyStore(dir, time.Hour)
	if a, _, _ := s2.Begin(ctx, "scope", "k1", "fp1"); a == nil {
		t.Error("answer lost across stores")
	}
	s2.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if a, c, _ := s2.Begin(ctx, "scope", "k1", "fp1"); a != nil || c == nil {
		t.Error("answer kept past its TTL")
	}
	for _, bad := range []string{"", strings.Repeat("k", 256), "new\nline"} {
		if _, _, err := s.Begin(ctx, "scope", bad, "fp"); !errors.Is(err, ErrInvalid) {
			t.Errorf("key %q: %v, want ErrInvalid", bad, err)
		}
	}
}
