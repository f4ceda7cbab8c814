package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logsCLI runs `kfbridge logs` against s and returns stdout and the exit code.
func logsCLI(t *testing.T, s *testServer, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kfbridge"), append([]string{"logs", "--server", s.URL}, args...)...)
	cmd.Env = append(os.Environ(), "KFBRIDGE_TOKEN="+s.Token)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kfbridge logs %v: %v\n%s", args, err, stderr.String())
	}
	return out.String(), code
}

// Ensure `kfbridge logs` follows a step to its end and exits with the step's exit code, follows a
// whole run and exits 1 when it failed, resumes after --after-seq, strips colour with --no-color
// and prints line objects with --json.
func TestLogsCLI(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.py"), `import time
print("\x1b[32mgreen\x1b[0m one")
time.sleep(0.5)
print("two")
print("three")
`)
	writeFile(t, filepath.Join(ws, "b.py"), `import sys
print("b says hi")
sys.exit(3)
`)
	p := writePipeline(t, ws, "logs", []tnode{{id: "a", file: "a.py"}, {id: "b", file: "b.py", parents: []string{"a"}}})
	s := startServer(t, ws)
	resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"`+filepath.Base(p)+`"}`), s.auth())
	if resp.StatusCode != 201 {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var run struct{ ID string }
	json.Unmarshal(body, &run)

	// Follow step b from before it starts: its lines, then its exit code.
	out, code := logsCLI(t, s, run.ID, "b", "-f")
	if code != 3 || !strings.Contains(out, "b says hi\n") {
		t.Fatalf("logs RUN b -f: exit %d, output:\n%s", code, out)
	}
	// The whole run, followed: every step's labelled lines; the run failed, so exit 1.
	out, code = logsCLI(t, s, run.ID, "-f")
	if code != 1 || !strings.Contains(out, "[a] two\n") || !strings.Contains(out, "[b] b says hi\n") {
		t.Fatalf("logs RUN -f: exit %d, output:\n%s", code, out)
	}
	// Step a from the start, colour stripped; then resumed after the line holding "one".
	out, code = logsCLI(t, s, run.ID, "a", "--no-color")
	if code != 0 || !strings.Contains(out, "green one\ntwo\nthree\n") || strings.Contains(out, "\x1b[") {
		t.Fatalf("logs RUN a --no-color: exit %d, output:\n%q", code, out)
	}
	out, _ = logsCLI(t, s, run.ID, "a", "--json")
	var seqOfOne int64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var x struct {
			Seq  int64  `json:"seq"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("--json printed %q: %v", l, err)
		}
		if strings.HasSuffix(x.Text, "one") {
			seqOfOne = x.Seq
		}
	}
	if seqOfOne == 0 {
		t.Fatalf("--json output lacks the first line:\n%s", out)
	}
	out, _ = logsCLI(t, s, run.ID, "a", "--after-seq", itoa(seqOfOne))
	if strings.Contains(out, "one") || !strings.HasPrefix(out, "two\nthree\n") {
		t.Fatalf("--after-seq %d: output:\n%s", seqOfOne, out)
	}
	// Unknown steps are usage errors.
	if _, code := logsCLI(t, s, run.ID, "nope"); code != 2 {
		t.Fatalf("unknown step: exit %d, want 2", code)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Ensure a run's log is complete after the server process is killed (SIGKILL) in the middle of a
// step and started again on the same address and data directory: the step keeps running, its
// pushes are refused by the new process, so it writes object-store segments and then its archive,
// which the new process serves.
func TestLogCompleteAfterServerKilledMidRun(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.py"), `import time
for i in range(1, 20001):
    print(f"line {i}")
    if i % 1000 == 0:
        time.sleep(0.1)
`)
	p := writePipeline(t, ws, "restart", []tnode{{id: "a", file: "a.py"}})
	s := startServer(t, ws)
	resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"`+filepath.Base(p)+`"}`), s.auth())
	if resp.StatusCode != 201 {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var run struct{ ID string }
	json.Unmarshal(body, &run)
	// Wait until the first server holds some lines, then kill it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _ := logsCLI(t, s, run.ID, "a")
		if strings.Count(out, "\n") > 2000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step did not start logging:\n%s", s.stderr)
		}
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	// The same address and data directory, as a restarted service would have.
	args := []string{"serve", "--addr", strings.TrimPrefix(s.URL, "http://"), "--workspace", ws, "--data-dir", s.DataDir, "--token", s.Token}
	s2 := &testServer{URL: s.URL, Token: s.Token, Workspace: ws, DataDir: s.DataDir, stderr: &bytes.Buffer{}}
	s2.cmd = exec.Command(filepath.Join(binDir, "kfbridge"), args...)
	s2.cmd.Stdout, s2.cmd.Stderr = s2.stderr, s2.stderr
	if err := s2.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		s2.cmd.Process.Signal(os.Interrupt)
		s2.cmd.Wait()
	}()
	var out string
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ = logsCLI(t, s2, run.ID, "a")
		if strings.Contains(out, `step "a" finished with exit code 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never completed after the restart (%d lines):\n%s", strings.Count(out, "\n"), s2.stderr)
		}
	}
	var want strings.Builder
	for i := 1; i <= 20000; i++ {
		want.WriteString("line " + itoa(int64(i)) + "\n")
	}
	if !strings.Contains(out, want.String()) {
		t.Fatalf("the restarted server's log lacks lines 1..20000 in order (%d lines)", strings.Count(out, "\n"))
	}
}
