package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/runner"
	"github.com/kfbridge/kfbridge/storage"
)

// fixture is a local-directory store holding one node's archive, like the server prepares it.
type fixture struct {
	storeDir, key, runDir string
	store                 storage.Store
}

func newFixture(t *testing.T, files map[string]string) *fixture {
	t.Helper()
	src := t.TempDir()
	var names []string
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	var buf bytes.Buffer
	sum, err := storage.WriteArchive(&buf, src, names)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{storeDir: t.TempDir(), runDir: storage.RunDir("", "run-1")}
	f.store, err = storage.Open(context.Background(), storage.Config{Endpoint: "file://" + f.storeDir, Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	f.key = storage.ArchiveKey("", "node", sum)
	if err := f.store.Put(context.Background(), f.key, &buf, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) args(file string, extra ...string) []string {
	return append([]string{"kfbridge-step", "--cos-endpoint", "file://" + f.storeDir, "--cos-bucket", "b",
		"--cos-directory", f.runDir, "--cos-dependencies-archive", filepath.Base(f.key), "--archive-key", f.key,
		"--file", file, "--run-id", "run-1", "--step-id", "step-1", "--pipeline-name", "p"}, extra...)
}

func chdir(t *testing.T) string {
	t.Helper()
	wd := t.TempDir()
	t.Chdir(wd)
	return wd
}

// Ensure the runner tees the script's lines to its own stdout/stderr (what the KFP dashboard
// shows), passes the exit code through, uploads outputs, and archives the same lines.
func TestRunnerTeesAndArchives(t *testing.T) {
	f := newFixture(t, map[string]string{"job.py": `import os, sys
print("hello from the step")
print("to stderr", file=sys.stderr)
print("param=" + os.environ["ALPHA"])
os.makedirs("out", exist_ok=True)
open("out/a.txt", "w").write("A")
open("out/b.txt", "w").write("B")
sys.exit(3)
`})
	chdir(t)
	var stdout, stderr bytes.Buffer
	code := runner.Main(context.Background(), f.args("dir/job.py", "--outputs", "out/*.txt", "--pipeline-parameters", "ALPHA=42"),
		os.Getenv, nil, &stdout, &stderr)
	if code != 3 {
		t.Fatalf("exit code %d, want the script's 3\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"hello from the step\n", "param=42\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("runner stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "to stderr\n") {
		t.Errorf("runner stderr lacks the script's stderr line:\n%s", stderr.String())
	}
	ctx := context.Background()
	for _, k := range []string{"out/a.txt", "out/b.txt"} {
		if _, err := f.store.Stat(ctx, storage.OutputKey(f.runDir, k)); err != nil {
			t.Errorf("output %s not uploaded: %v", k, err)
		}
	}
	rc, err := f.store.Get(ctx, storage.StepKey(f.runDir, "step-1", "log.txt"))
	if err != nil {
		t.Fatalf("log.txt not archived: %v", err)
	}
	logTxt, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(logTxt), "hello from the step\nto stderr\n") && !strings.Contains(string(logTxt), "hello from the step\n") {
		t.Errorf("archived log lacks the script's lines:\n%s", logTxt)
	}
	rc, err = f.store.Get(ctx, storage.StepKey(f.runDir, "step-1", "manifest.json"))
	if err != nil {
		t.Fatalf("manifest not archived: %v", err)
	}
	var m struct {
		FinalSeq int64 `json:"final_seq"`
		ExitCode int   `json:"exit_code"`
	}
	json.NewDecoder(rc).Decode(&m)
	rc.Close()
	if m.ExitCode != 3 || m.FinalSeq < 4 {
		t.Errorf("manifest = %+v, want exit_code 3 and every line counted", m)
	}
}

// Ensure usage errors exit 2 with a message naming the missing flags.
func TestRunnerUsage(t *testing.T) {
	var stderr bytes.Buffer
	code := runner.Main(context.Background(), []string{"kfbridge-step", "--file", "x.py"}, os.Getenv, nil, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--cos-endpoint") {
		t.Errorf("code %d, stderr %q; want 2 naming --cos-endpoint", code, stderr.String())
	}
}

// Ensure SIGTERM sent to the runner reaches the script's process group, and the script's own
// exit code comes back.
func TestRunnerForwardsSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kfbridge-step")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kfbridge/kfbridge/cmd/kfbridge-step").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f := newFixture(t, map[string]string{"wait.py": `import signal, sys, time
def term(signum, frame):
    print("child got SIGTERM", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(60)
`})
	cmd := exec.Command(bin, f.args("wait.py")[1:]...)
	cmd.Dir = t.TempDir()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if sc.Text() == "ready" {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("runner did not exit after SIGTERM")
	}
	if cmd.ProcessState.ExitCode() != 7 {
		t.Errorf("exit code %d, want the script's 7", cmd.ProcessState.ExitCode())
	}
	if !strings.Contains(strings.Join(seen, "\n"), "child got SIGTERM") {
		t.Errorf("the script never saw SIGTERM; runner output:\n%s", strings.Join(seen, "\n"))
	}
}

// Ensure the step binary stays small: no server, router, websocket or KFP client code in it.
func TestStepBinaryDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/kfbridge/kfbridge/cmd/kfbridge-step").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{"github.com/go-chi/", "github.com/gorilla/", "github.com/kfbridge/kfbridge/server",
		"github.com/kfbridge/kfbridge/handlers", "github.com/kfbridge/kfbridge/kfp", "github.com/kfbridge/kfbridge/runs",
		"github.com/kfbridge/kfbridge/pipeline", "github.com/kfbridge/kfbridge/web"}
	var mods int
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("kfbridge-step depends on %s", d)
			}
		}
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") && !strings.HasPrefix(d, "github.com/kfbridge/") { // vendor/… is the standard library's own
			mods++
		}
	}
	// minio-go and its few dependencies are the only third-party code the runner needs.
	if mods > 50 {
		t.Errorf("kfbridge-step pulls in %d third-party packages; keep it lean", mods)
	}
}
