package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// binDir holds kfbridge and kfbridge-step built once for the package's end-to-end tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kfbridge-e2e-bin-")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/kfbridge/kfbridge/cmd/kfbridge", "github.com/kfbridge/kfbridge/cmd/kfbridge-step")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testServer is a `kfbridge serve` process.
type testServer struct {
	URL, Token, Workspace, DataDir string
	cmd                            *exec.Cmd
	stderr                         *bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs the real binary against workspace and waits until it answers.
func startServer(t *testing.T, workspace string, extra ...string) *testServer {
	t.Helper()
	return startServerEnv(t, workspace, nil, extra...)
}

// startServerEnv is startServer with extra environment variables for the server process.
func startServerEnv(t *testing.T, workspace string, env []string, extra ...string) *testServer {
	t.Helper()
	s := &testServer{Token: "test-token-0123456789", Workspace: workspace, DataDir: t.TempDir(), stderr: &bytes.Buffer{}}
	port := freePort(t)
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := append([]string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--workspace", workspace,
		"--data-dir", s.DataDir, "--token", s.Token}, extra...)
	s.cmd = exec.Command(filepath.Join(binDir, "kfbridge"), args...)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	s.cmd.Env = append(os.Environ(), env...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			t.Errorf("server did not shut down within 20s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %v\n%s", err, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *testServer) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
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

func (s *testServer) auth() map[string]string {
	return map[string]string{"Authorization": "Bearer " + s.Token, "Content-Type": "application/json"}
}

// writePipeline writes a v8 pipeline of Python nodes. Each node is {id, file, parents, outputs}.
type tnode struct {
	id, file string
	parents  []string
	outputs  []string
}

func writePipeline(t *testing.T, dir, name string, nodes []tnode) string {
	t.Helper()
	var ns []any
	for _, n := range nodes {
		var links []any
		for _, p := range n.parents {
			links = append(links, map[string]any{"id": "l-" + p + "-" + n.id, "node_id_ref": p, "port_id_ref": "outPort"})
		}
		in := map[string]any{"id": "inPort"}
		if links != nil {
			in["links"] = links
		}
		outputs := n.outputs
		if outputs == nil {
			outputs = []string{}
		}
		ns = append(ns, map[string]any{
			"id": n.id, "type": "execution_node", "op": "execute-python-node",
			"app_data": map[string]any{
				"label": strings.TrimSuffix(filepath.Base(n.file), ".py"),
				"component_parameters": map[string]any{
					"filename": n.file, "runtime_image": "python:3.11", "dependencies": []string{},
					"outputs": outputs, "env_vars": []any{},
				},
				"ui_data": map[string]any{"label": n.file},
			},
			"inputs":  []any{in},
			"outputs": []any{map[string]any{"id": "outPort"}},
		})
	}
	doc := map[string]any{
		"doc_type": "pipeline", "version": "3.0", "id": "elyra-auto-generated-pipeline", "primary_pipeline": "p",
		"json_schema": "http://api.dataplatform.ibm.com/schemas/common-pipeline/pipeline-flow/pipeline-flow-v3-schema.json",
		"schemas":     []any{},
		"pipelines": []any{map[string]any{"id": "p", "runtime_ref": "", "nodes": ns,
			"app_data": map[string]any{"version": 8, "properties": map[string]any{"name": name}}}},
	}
	b, _ := json.MarshalIndent(doc, "", " ")
	path := filepath.Join(dir, name+".pipeline")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checksumTree maps every file under dir to its sha256 and mode, to prove a run left it untouched.
func checksumTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:]) + " " + info.Mode().String() + " " + info.ModTime().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// event is one NDJSON line of `submit --follow --json`, with the time the test read it.
type event struct {
	Type      string `json:"type"`
	Step      string `json:"step"`
	StepLabel string `json:"step_label"`
	Seq       int64  `json:"seq"`
	Stream    string `json:"stream"`
	Text      string `json:"text"`
	Status    string `json:"status"`
	ExitCode  *int   `json:"exit_code"`
	ID        string `json:"id"`
	Phase     string `json:"phase"`
	at        time.Time
}

// submitFollow runs `kfbridge submit FILE --follow --json` and returns its events as they arrived.
func submitFollow(t *testing.T, s *testServer, file string, extra ...string) ([]event, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"submit", file, "--server", s.URL, "--follow", "--json", "--workspace", s.Workspace}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kfbridge"), args...)
	cmd.Env = append(os.Environ(), "KFBRIDGE_TOKEN="+s.Token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var events []event
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("submit printed a non-JSON line %q: %v", sc.Text(), err)
		}
		e.at = time.Now()
		events = append(events, e)
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr.String())
	}
	return events, code, stderr.String()
}

func lineEvents(events []event, label string) []event {
	var out []event
	for _, e := range events {
		if e.Type == "line" && e.StepLabel == label && e.Stream != "system" {
			out = append(out, e)
		}
	}
	return out
}

// Ensure a two-node pipeline runs end to end through the real binaries, that node A's lines reach the
// client while A is still running, that B sees A's output file, and that the workspace is untouched.
func TestEndToEndLiveFollow(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.py"), `import time
print("A: first line", flush=True)
time.sleep(1.5)
with open("handoff.txt", "w") as f:
    f.write("payload-from-A\n")
print("A: second line")
`)
	writeFile(t, filepath.Join(ws, "b.py"), `print("B read: " + open("handoff.txt").read().strip())
`)
	file := writePipeline(t, ws, "two", []tnode{
		{id: "node-a", file: "a.py", outputs: []string{"handoff.txt"}},
		{id: "node-b", file: "b.py", parents: []string{"node-a"}},
	})
	before := checksumTree(t, ws)
	s := startServer(t, ws)

	events, code, stderr := submitFollow(t, s, file)
	if code != 0 {
		t.Fatalf("submit --follow exited %d, want 0\n%s", code, stderr)
	}
	a := lineEvents(events, "a")
	if len(a) != 2 || a[0].Text != "A: first line" || a[1].Text != "A: second line" {
		t.Fatalf("lines of a = %+v, want the two lines A printed", a)
	}
	if gap := a[1].at.Sub(a[0].at); gap < time.Second {
		t.Errorf("A's first line reached the client only %v before its second; want >= 1s (live, not at step end)", gap)
	}
	if a[0].Seq < 1 || a[1].Seq != a[0].Seq+1 {
		t.Errorf("seqs of A's lines = %d, %d; want consecutive numbers from the source", a[0].Seq, a[1].Seq)
	}
	b := lineEvents(events, "b")
	if len(b) != 1 || b[0].Text != "B read: payload-from-A" {
		t.Errorf("lines of b = %+v, want B printing A's file", b)
	}
	last := events[len(events)-1]
	if last.Type != "run" || last.Status != "succeeded" || last.ID == "" {
		t.Fatalf("last event = %+v, want the run succeeded", last)
	}
	packaged := map[string]bool{}
	for _, e := range events {
		if e.Type == "progress" && (e.Phase == "done" || e.Phase == "deduplicated") {
			packaged[e.Step] = true
		}
	}
	if !packaged["node-a"] || !packaged["node-b"] {
		t.Errorf("packaging progress reported for %v, want both nodes", packaged)
	}

	resp, body := s.do(t, "GET", "/api/v1/runs/"+last.ID, nil, s.auth())
	if resp.StatusCode != 200 {
		t.Fatalf("GET run: %s %s", resp.Status, body)
	}
	var run struct {
		Status string
		Steps  []struct {
			ID       string
			Status   string
			ExitCode *int `json:"exit_code"`
		}
	}
	json.Unmarshal(body, &run)
	if run.Status != "succeeded" || len(run.Steps) != 2 {
		t.Fatalf("run = %s", body)
	}
	for _, st := range run.Steps {
		if st.Status != "succeeded" || st.ExitCode == nil || *st.ExitCode != 0 {
			t.Errorf("step %s: status %s exit %v, want succeeded 0", st.ID, st.Status, st.ExitCode)
		}
	}
	if after := checksumTree(t, ws); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("workspace changed by the run:\nbefore %v\nafter  %v", before, after)
	}
}

// Ensure a failing step fails the run with its exit code, its descendants do not run, and
// submit --follow exits non-zero.
func TestEndToEndFailingStep(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "fail.py"), "import sys\nprint('about to fail')\nsys.exit(3)\n")
	writeFile(t, filepath.Join(ws, "after.py"), "print('must not run')\n")
	file := writePipeline(t, ws, "failing", []tnode{
		{id: "f", file: "fail.py"},
		{id: "g", file: "after.py", parents: []string{"f"}},
	})
	s := startServer(t, ws)
	events, code, _ := submitFollow(t, s, file)
	if code == 0 {
		t.Fatal("submit --follow exited 0 for a failed run")
	}
	var stepF, stepG *event
	for i := range events {
		e := &events[i]
		if e.Type == "step" && e.Step == "f" && e.Status == "failed" {
			stepF = e
		}
		if e.Type == "step" && e.Step == "g" {
			stepG = e
		}
		if e.Type == "line" && strings.Contains(e.Text, "must not run") {
			t.Error("the downstream step ran")
		}
	}
	if stepF == nil || stepF.ExitCode == nil || *stepF.ExitCode != 3 {
		t.Fatalf("step f event = %+v, want failed with exit code 3", stepF)
	}
	if stepG == nil || stepG.Status != "skipped" {
		t.Errorf("step g event = %+v, want skipped", stepG)
	}
	last := events[len(events)-1]
	if last.Type != "run" || last.Status != "failed" {
		t.Errorf("last event = %+v, want run failed", last)
	}
	_, body := s.do(t, "GET", "/api/v1/runs/"+last.ID, nil, s.auth())
	if !strings.Contains(string(body), `"exit_code": 3`) && !strings.Contains(string(body), `"exit_code":3`) {
		t.Errorf("GET run does not report exit code 3: %s", body)
	}
}

// Ensure the API refuses requests without the token, websockets from a foreign origin, and pipelines
// whose files lie outside the workspace (with a 4xx naming the node and the property).
func TestSecurityBoundaries(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "ok.py"), "print('ok')\n")
	s := startServer(t, ws)

	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer wrong"}} {
		resp, body := s.do(t, "GET", "/api/v1/runs", nil, hdr)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
			t.Errorf("GET /api/v1/runs with %v: %s %s, want 401 problem+json", hdr, resp.Status, body)
		}
	}
	resp, _ := s.do(t, "GET", "/api/v1/runs", nil, map[string]string{"Authorization": "token " + s.Token})
	if resp.StatusCode != 200 {
		t.Errorf("Jupyter-style 'token' auth: %s, want 200", resp.Status)
	}

	// A run to open a websocket on.
	writePipeline(t, ws, "one", []tnode{{id: "n1", file: "ok.py"}})
	resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"one.pipeline"}`), s.auth())
	if resp.StatusCode != 201 {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var run struct{ ID string }
	json.Unmarshal(body, &run)
	wsURL := strings.Replace(s.URL, "http", "ws", 1) + "/api/v1/runs/" + run.ID + "/logs"
	hdr := http.Header{"Authorization": {"Bearer " + s.Token}, "Origin": {"http://evil.example"}}
	conn, wresp, err := websocket.DefaultDialer.Dial(wsURL, hdr)
	if err == nil {
		conn.Close()
		t.Fatal("websocket from a foreign origin was accepted")
	}
	if wresp == nil || wresp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: got %v, want 403", wresp)
	}
	hdr.Set("Origin", s.URL)
	conn, _, err = websocket.DefaultDialer.Dial(wsURL, hdr)
	if err != nil {
		t.Fatalf("same-origin websocket refused: %v", err)
	}
	conn.Close()

	outside := filepath.Join(filepath.Dir(ws), "outside.py")
	writeFile(t, outside, "print('escaped')\n")
	defer os.Remove(outside)
	for name, filename := range map[string]string{"dotdot": "../outside.py", "absolute": outside} {
		writePipeline(t, ws, name, []tnode{{id: "bad-node", file: filename}})
		resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"`+name+`.pipeline"}`), s.auth())
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: %s, want 4xx", name, resp.Status)
		}
		var p struct {
			Issues []struct {
				Type string
				Data map[string]any
			}
		}
		json.Unmarshal(body, &p)
		found := false
		for _, is := range p.Issues {
			if is.Data["nodeID"] == "bad-node" && is.Data["propertyName"] == "filename" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: problem does not name node bad-node and property filename: %s", name, body)
		}
	}
	for _, path := range []string{"../x.pipeline", "/etc/passwd"} {
		resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"`+path+`"}`), s.auth())
		if resp.StatusCode != 400 {
			t.Errorf("submit path %q: %s %s, want 400", path, resp.Status, body)
		}
	}
	resp, _ = s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"one.pipeline","x":`+strings.Repeat(" ", 9<<20)+`1}`), s.auth())
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %s, want 413", resp.Status)
	}
}
