package server_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Ensure POST /api/v1/pipelines/validate always answers 200 with Elyra-shaped issues, for a
// pipeline document, a path in the workspace and a body that is not JSON at all; and that submit
// refuses the same pipeline with 400 and the same issues.
func TestValidateEndpoint(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "sub", "ok.py"), "print('ok')\n")
	writePipeline(t, filepath.Join(ws, "sub"), "good", []tnode{{id: "n1", file: "ok.py"}})
	writePipeline(t, ws, "bad", []tnode{{id: "n-missing", file: "missing.py"}})
	s := startServer(t, ws)

	type issue struct {
		Severity int
		Type     string
		Data     map[string]any
	}
	validate := func(body string) []issue {
		t.Helper()
		resp, b := s.do(t, "POST", "/api/v1/pipelines/validate", strings.NewReader(body), s.auth())
		if resp.StatusCode != 200 {
			t.Fatalf("validate %.40q: %s %s, want 200", body, resp.Status, b)
		}
		var out struct{ Issues []issue }
		if err := json.Unmarshal(b, &out); err != nil || out.Issues == nil {
			t.Fatalf("validate answer %s: want {\"issues\": [...]}", b)
		}
		return out.Issues
	}
	if is := validate(`{"path":"sub/good.pipeline"}`); len(is) != 0 {
		t.Errorf("good pipeline (file names relative to the pipeline file): issues %+v, want none", is)
	}
	is := validate(`{"path":"bad.pipeline"}`)
	if len(is) == 0 || is[0].Type != "invalidFilePath" || is[0].Data["nodeID"] != "n-missing" || is[0].Data["propertyName"] != "filename" {
		t.Errorf("missing file: issues %+v, want invalidFilePath naming node n-missing, property filename", is)
	}
	doc, _ := os.ReadFile(filepath.Join(ws, "bad.pipeline"))
	if is := validate(string(doc)); len(is) == 0 || is[0].Type != "invalidFilePath" {
		t.Errorf("pipeline document: issues %+v, want invalidFilePath", is)
	}
	if is := validate(`{not json`); len(is) == 0 || is[0].Type != "invalidJSON" {
		t.Errorf("broken body: issues %+v, want invalidJSON", is)
	}
	resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"bad.pipeline"}`), s.auth())
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"invalidFilePath"`) {
		t.Errorf("submit of an invalid pipeline: %s %s, want 400 with the issues", resp.Status, body)
	}
}

// Ensure `kfbridge validate` exits 0 without errors, 1 with errors (printing them, as JSON with
// --json) and 2 on usage errors.
func TestValidateCLI(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "ok.py"), "print('ok')\n")
	good := writePipeline(t, ws, "good", []tnode{{id: "n1", file: "ok.py"}})
	bad := writePipeline(t, ws, "bad", []tnode{{id: "n2", file: "../escape.py"}})
	run := func(args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(binDir, "kfbridge"), append([]string{"validate"}, args...)...)
		cmd.Dir = ws
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		return 0, out.String()
	}
	if code, out := run(good); code != 0 || !strings.Contains(out, "0 error(s)") {
		t.Errorf("good: exit %d\n%s", code, out)
	}
	code, out := run(bad)
	if code != 1 || !strings.Contains(out, "invalidFilePath") || !strings.Contains(out, "n2") {
		t.Errorf("bad: exit %d, want 1 naming the issue and node\n%s", code, out)
	}
	code, out = run(bad, "--json")
	var js struct{ Issues []map[string]any }
	if code != 1 || json.Unmarshal([]byte(out), &js) != nil || len(js.Issues) == 0 {
		t.Errorf("bad --json: exit %d, output %s; want 1 and {\"issues\":[…]}", code, out)
	}
	if code, _ := run("nonexistent.pipeline"); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
	if code, _ := run(); code != 2 {
		t.Errorf("no argument: exit %d, want 2", code)
	}
}
