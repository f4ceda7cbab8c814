package runs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// configMap is a RuntimeConfigs over fixed configurations.
type configMap map[string]RuntimeConfig

func (c configMap) RuntimeWithSecrets(name string) (RuntimeConfig, error) {
	rc, ok := c[name]
	if !ok {
		return RuntimeConfig{}, fmt.Errorf("runtime %q: %w", name, ErrNotFound)
	}
	return rc, nil
}

// kfpManager is a Manager whose only runtime is a KFP runtime "kfp" on a fake KFP (steps scripted
// by exec) with versitygw as its object store. It runs in-process, so `go test -race` covers the
// manager, the watcher and the log store together.
func kfpManager(t *testing.T, exec kfptest.Executor) (*Manager, *kfptest.Server, string) {
	t.Helper()
	gw := s3test.Start(t)
	fake := kfptest.NewServer(t, kfptest.Options{Versions: []string{"v1beta1"}, Executor: exec})
	rc := RuntimeConfig{Name: "kfp", DisplayName: "kfp", SchemaName: SchemaKFP, Metadata: RuntimeMetadata{
		APIEndpoint: fake.URL, APIVersion: kfp.V1Beta1, AuthType: string(kfp.AuthNone),
		COSEndpoint: gw.Endpoint, COSBucket: "kfb-runs", COSAuthType: COSAuthKubernetesSecret, COSSecret: "s3",
		COSUsername: gw.AccessKey, COSPassword: gw.SecretKey, RunnerImage: "ghcr.io/kfbridge/kfbridge:test",
	}}
	router := NewArchiveRouter(nil)
	logs := logstream.New(logstream.Options{SpoolDir: t.TempDir(), Archive: router, TailInterval: 50 * time.Millisecond, EndWait: 300 * time.Millisecond})
	t.Cleanup(logs.Close)
	m, err := NewManager(Config{
		DataDir: t.TempDir(), Logs: logs, Archives: router,
		Runtimes: &KFPResolver{Configs: configMap{"kfp": rc}, Options: KFPOptions{PollInterval: 20 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ws := t.TempDir()
	for _, f := range []string{"a.py", "b.py"} {
		if err := os.WriteFile(filepath.Join(ws, f), []byte("print('x')\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return m, fake, ws
}

func twoSteps() *pipeline.Pipeline {
	return &pipeline.Pipeline{Name: "two", Nodes: []*pipeline.Node{
		{ID: "A", Label: "a", Kind: pipeline.KindPython, Filename: "a.py", RuntimeImage: "python:3.11"},
		{ID: "B", Label: "b", Kind: pipeline.KindPython, Filename: "b.py", RuntimeImage: "python:3.11", Parents: []string{"A"}},
	}}
}

func waitFinal(t *testing.T, m *Manager, id string) *Run {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if Terminal(r.Status) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s", r.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure the manager runs a submission on the KFP runtime named in it: the submit returns the
// KFP run, step statuses follow KFP's (a failing step with its exit code, its child skipped), and
// the events reach the log store in order.
func TestManagerKFPRuntime(t *testing.T) {
	exec := kfptest.ScriptExecutor{Delay: 30 * time.Millisecond, Steps: map[string]kfptest.StepScript{"a": {ExitCode: 4, Delay: 50 * time.Millisecond}}}
	m, fake, ws := kfpManager(t, exec)
	r, err := m.Submit(context.Background(), Submission{Pipeline: twoSteps(), Root: ws, Runtime: "kfp"})
	if err != nil {
		t.Fatal(err)
	}
	if r.KFPRunID == "" || r.Runtime != "kfp" || r.Status != StatusRunning || fake.Run(r.KFPRunID) == nil {
		t.Fatalf("submitted run = %+v", r)
	}
	final := waitFinal(t, m, r.ID)
	if final.Status != StatusFailed {
		t.Errorf("run %s (%s), want failed", final.Status, final.Error)
	}
	a, b := final.step("A"), final.step("B")
	if a.Status != StatusFailed || a.ExitCode == nil || *a.ExitCode != 4 || a.KFPTask != "a" {
		t.Errorf("step A = %+v, want failed with exit code 4, task a", a)
	}
	if b.Status != StatusSkipped {
		t.Errorf("step B = %+v, want skipped", b)
	}
	// A step's terminal event waits for its log (EndWait here: the scripted steps write none).
	var seq []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		seq = nil
		for _, ev := range m.cfg.Logs.Events(r.ID, 0) {
			if ev.Type == logstream.EventStep && ev.Step == "A" {
				seq = append(seq, ev.Status)
			}
		}
		if len(seq) == 2 {
			break
		}
	}
	if fmt.Sprint(seq) != "[running failed]" {
		t.Errorf("events of step A = %v, want [running failed]", seq)
	}
	if _, err := m.Submit(context.Background(), Submission{Pipeline: twoSteps(), Root: ws, Runtime: "nope"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown runtime: %v, want ErrInvalid", err)
	}
}

// Ensure Cancel terminates the KFP run before it returns, the run ends cancelled, and Close
// leaves a running KFP run alone.
func TestManagerKFPCancelAndClose(t *testing.T) {
	exec := kfptest.ScriptExecutor{Steps: map[string]kfptest.StepScript{"a": {Block: true}}}
	m, fake, ws := kfpManager(t, exec)
	ctx := context.Background()
	r, err := m.Submit(ctx, Submission{Pipeline: twoSteps(), Root: ws, Runtime: "kfp"})
	if err != nil {
		t.Fatal(err)
	}
	for fake.Run(r.KFPRunID).StepPhase("a") != kfptest.PhaseRunning {
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Cancel(r.ID); err != nil {
		t.Fatal(err)
	}
	if !fake.Run(r.KFPRunID).Terminated() {
		t.Error("Cancel returned before KFP was asked to terminate")
	}
	if final := waitFinal(t, m, r.ID); final.Status != StatusCancelled {
		t.Errorf("run %s (%s), want cancelled", final.Status, final.Error)
	}

	r2, err := m.Submit(ctx, Submission{Pipeline: twoSteps(), Root: ws, Runtime: "kfp"})
	if err != nil {
		t.Fatal(err)
	}
	for fake.Run(r2.KFPRunID).StepPhase("a") != kfptest.PhaseRunning {
		time.Sleep(10 * time.Millisecond)
	}
	m.Close()
	if fake.Run(r2.KFPRunID).Terminated() {
		t.Error("Close terminated a KFP run")
	}
	if got, _ := m.Get(r2.ID); got.Status != StatusRunning {
		t.Errorf("after Close the run is %s, want still running (it goes on in KFP)", got.Status)
	}
}
