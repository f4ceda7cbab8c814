package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/runner"
	"github.com/kfbridge/kfbridge/storage"
)

// needNotebooks skips a test when Debian's python3-nbclient/python3-ipykernel are missing, except
// under CI=true, where it fails. It also gives the kernel a private HOME (it writes ~/.ipython and
// ~/.jupyter) and silences debugpy's frozen-modules warning.
func needNotebooks(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import nbclient, nbformat, ipykernel").Run(); err != nil {
		msg := "python3-nbclient/python3-ipykernel not installed for /usr/bin/python3 (apt-get install --no-install-recommends python3-nbclient python3-ipykernel)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("IPYTHONDIR", filepath.Join(home, ".ipython"))
	t.Setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
	t.Setenv(runner.EnvMetricsDir, filepath.Join(home, "metrics"))
}

// nbCell is a cell of a test notebook.
type nbCell struct {
	kind, source string
	tags         []string
}

// notebookJSON builds an nbformat 4 notebook for the given kernelspec name.
func notebookJSON(t testing.TB, kernel string, cells ...nbCell) string {
	t.Helper()
	var cs []map[string]any
	for _, c := range cells {
		meta := map[string]any{}
		if len(c.tags) > 0 {
			meta["tags"] = c.tags
		}
		cell := map[string]any{"cell_type": c.kind, "metadata": meta, "source": c.source}
		if c.kind == "code" {
			cell["outputs"] = []any{}
			cell["execution_count"] = nil
		}
		cs = append(cs, cell)
	}
	b, err := json.MarshalIndent(map[string]any{
		"nbformat": 4, "nbformat_minor": 5, "cells": cs,
		"metadata": map[string]any{"kernelspec": map[string]any{"name": kernel, "display_name": kernel, "language": "python"}},
	}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineClock records when each line written to it arrived: it stands where the KFP dashboard reads
// the runner's stdout.
type lineClock struct {
	mu    sync.Mutex
	buf   []byte
	lines []string
	at    []time.Time
}

func (c *lineClock) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			break
		}
		c.lines = append(c.lines, string(c.buf[:i]))
		c.at = append(c.at, now)
		c.buf = c.buf[i+1:]
	}
	return len(p), nil
}

func (c *lineClock) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// find returns the index of the first line equal to s (or with prefix s when prefix is set).
func (c *lineClock) find(s string, prefix bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, l := range c.lines {
		if l == s || prefix && strings.HasPrefix(l, s) {
			return i
		}
	}
	return -1
}

func readObject(t *testing.T, store storage.Store, key string) []byte {
	t.Helper()
	rc, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// executedNotebook is the part of an executed notebook the tests look at.
type executedNotebook struct {
	Cells []struct {
		CellType       string                  `json:"cell_type"`
		Source         any                     `json:"source"`
		ExecutionCount *int                    `json:"execution_count"`
		Metadata       struct{ Tags []string } `json:"metadata"`
		Outputs        []struct {
			OutputType string         `json:"output_type"`
			Name       string         `json:"name"`
			Text       any            `json:"text"`
			Data       map[string]any `json:"data"`
			Ename      string         `json:"ename"`
		} `json:"outputs"`
	} `json:"cells"`
}

func joinSource(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []any:
		var b strings.Builder
		for _, p := range s {
			b.WriteString(p.(string))
		}
		return b.String()
	}
	return ""
}

// Ensure a notebook's output reaches the runner's stdout line by line while the cell still runs:
// a line printed before a 1 s sleep arrives at least 0.8 s before the line after it, inside the
// same cell marker. The same run checks parameter injection after the cell tagged parameters,
// the executed notebook upload (with outputs), and that the source notebook stays untouched.
func TestNotebookLiveOutputParametersAndResult(t *testing.T) {
	needNotebooks(t)
	src := notebookJSON(t, "python3",
		nbCell{kind: "markdown", source: "# live"},
		nbCell{kind: "code", source: "alpha = 1\nlabel = 'default'\nflag = False\nratio = 0.0", tags: []string{"parameters"}},
		nbCell{kind: "code", source: "import sys, time\nprint('typed', flag is True, ratio * 2, 'nan' if isinstance(big, str) else big)\nprint('first', alpha * 2, type(alpha).__name__, label, flush=True)\ntime.sleep(1)\nprint('second')\nprint('to stderr', file=sys.stderr)"},
		nbCell{kind: "code", source: "{'sum': alpha + 1}"},
	)
	f := newNotebookFixture(t, map[string]string{"live.ipynb": src})
	wd := chdirTemp(t)
	clock := &lineClock{}
	var stderr bytes.Buffer
	code := runner.Main(context.Background(), f.args("nb/live.ipynb", "--pipeline-parameters", "alpha=21;label=from-pipeline;flag=true;ratio=0.25;big=nan"),
		os.Getenv, nil, clock, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, clock, stderr.String())
	}
	first, second := clock.find("first 42 int from-pipeline", false), clock.find("second", false)
	if first < 0 || second < 0 {
		t.Fatalf("runner stdout lacks the cell's lines (with injected parameters):\n%s", clock)
	}
	gap := clock.at[second].Sub(clock.at[first])
	if gap < 800*time.Millisecond {
		t.Errorf("first line reached stdout only %v before the second; want >= 0.8s (not live)", gap)
	}
	t.Logf("first line arrived %v before the second", gap)
	// The cell markers frame the lines: both after "cell 3/4" and before "cell 4/4" (cell 2 is
	// the injected parameters).
	open, next := clock.find("cell 3/4", false), clock.find("cell 4/4", false)
	if open < 0 || next < 0 || !(open < first && second < next) {
		t.Errorf("lines are not inside their cell's markers (cell 3/4 at %d, first %d, second %d, cell 4/4 at %d):\n%s", open, first, second, next, clock)
	}
	if clock.find("typed True 0.5 nan", false) < 0 {
		t.Errorf("injected parameters are not typed as papermill's -p types them:\n%s", clock)
	}
	if clock.find("cell 2/4 (injected parameters)", false) < 0 {
		t.Errorf("no marker for the injected parameters cell:\n%s", clock)
	}
	if clock.find("{'sum': 22}", false) < 0 {
		t.Errorf("the execute result's text/plain is not in the log:\n%s", clock)
	}
	if !strings.Contains(stderr.String(), "to stderr\n") {
		t.Errorf("the cell's stderr did not reach the runner's stderr:\n%s", stderr.String())
	}

	// The source is untouched, in the working directory and in the bucket's archive.
	if got, err := os.ReadFile(filepath.Join(wd, "live.ipynb")); err != nil || string(got) != src {
		t.Errorf("source notebook changed in the working directory (err %v)", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(wd, "*output*")); len(matches) > 0 {
		t.Errorf("executed notebook written into the working directory: %v", matches)
	}
	var nb executedNotebook
	if err := json.Unmarshal(readObject(t, f.store, runner.OutputNotebookKey(f.runDir, "nb/live.ipynb")), &nb); err != nil {
		t.Fatal(err)
	}
	if len(nb.Cells) != 5 {
		t.Fatalf("executed notebook has %d cells, want 5 (4 + injected parameters)", len(nb.Cells))
	}
	inj := nb.Cells[2]
	if len(inj.Metadata.Tags) == 0 || inj.Metadata.Tags[0] != "injected-parameters" ||
		joinSource(inj.Source) != "# Parameters\nalpha = 21\nlabel = 'from-pipeline'\nflag = True\nratio = 0.25\nbig = 'nan'\n" {
		t.Errorf("cell after the parameters cell = tags %v source %q; want the injected parameters", inj.Metadata.Tags, joinSource(inj.Source))
	}
	out := nb.Cells[3].Outputs
	if len(out) == 0 || out[0].OutputType != "stream" || !strings.Contains(joinSource(out[0].Text), "first 42") {
		t.Errorf("executed notebook lacks the cell's stream output: %+v", out)
	}
	if c := nb.Cells[4]; c.ExecutionCount == nil || *c.ExecutionCount != 4 || len(c.Outputs) == 0 || c.Outputs[0].OutputType != "execute_result" {
		t.Errorf("last cell = count %v outputs %+v; want execution count 4 with an execute_result", c.ExecutionCount, c.Outputs)
	}
	// One channel carries markers and both streams, so the archived log has them in kernel order.
	logTxt := readObject(t, f.store, storage.StepKey(f.runDir, "step-1", "log.txt"))
	if !strings.Contains(string(logTxt), "cell 3/4\ntyped True 0.5 nan\nfirst 42 int from-pipeline\nsecond\nto stderr\ncell 4/4\n{'sum': 22}\n") {
		t.Errorf("archived log.txt lacks the cell's lines in order:\n%s", logTxt)
	}
	// The bucket holds the executed notebook under its own name, never the source's.
	if _, err := f.store.Stat(context.Background(), storage.OutputKey(f.runDir, "nb/live.ipynb")); err == nil {
		t.Error("something was uploaded under the source notebook's name")
	}
}

// Ensure a failing cell fails the step with "cell N: ename: evalue", later cells do not run, the
// executed notebook (with the traceback) is still uploaded, and a notebook whose kernelspec is not
// installed runs on the first kernel of its language.
func TestNotebookFailingCell(t *testing.T) {
	needNotebooks(t)
	src := notebookJSON(t, "no-such-kernel",
		nbCell{kind: "code", source: "import os\nos.system('echo from-a-subprocess')\nprint('before')"},
		nbCell{kind: "markdown", source: "text"},
		nbCell{kind: "code", source: ""},
		nbCell{kind: "code", source: "x = 1\n1/0"},
		nbCell{kind: "code", source: "print('never printed')"},
	)
	f := newNotebookFixture(t, map[string]string{"fail.ipynb": src})
	chdirTemp(t)
	var stdout, stderr bytes.Buffer
	code := runner.Main(context.Background(), f.args("fail.ipynb"), os.Getenv, nil, &stdout, &stderr)
	if code == 0 {
		t.Fatalf("a failing cell did not fail the step\nstdout:\n%s", stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{"starting kernel python3 (python)", "before\n", "cell 2: ZeroDivisionError: division by zero"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "never printed") {
		t.Error("a cell after the failing one ran")
	}
	// Output a subprocess writes to the kernel's descriptors is logged once, not once per path.
	if n := strings.Count(out, "from-a-subprocess\n"); n != 1 {
		t.Errorf("subprocess output logged %d times, want once:\n%s", n, out)
	}
	if strings.Contains(stderr.String(), "Warning") {
		t.Errorf("driver warnings in the user's log:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "ZeroDivisionError") {
		t.Errorf("the traceback is not on stderr:\n%s", stderr.String())
	}
	var nb executedNotebook
	if err := json.Unmarshal(readObject(t, f.store, runner.OutputNotebookKey(f.runDir, "fail.ipynb")), &nb); err != nil {
		t.Fatal(err)
	}
	if o := nb.Cells[3].Outputs; len(o) == 0 || o[len(o)-1].OutputType != "error" || o[len(o)-1].Ename != "ZeroDivisionError" {
		t.Errorf("executed notebook lacks the error output: %+v", o)
	}
	manifest := readObject(t, f.store, storage.StepKey(f.runDir, "step-1", "manifest.json"))
	if !strings.Contains(string(manifest), "cell 2: ZeroDivisionError: division by zero") {
		t.Errorf("manifest error does not name the cell:\n%s", manifest)
	}
}

// Ensure cancelling a notebook step stops the driver and its kernel (which runs in its own
// session, out of reach of the process-group SIGTERM) instead of leaving the kernel behind.
func TestNotebookCancelStopsKernel(t *testing.T) {
	needNotebooks(t)
	f := newNotebookFixture(t, map[string]string{"slow.ipynb": notebookJSON(t, "python3",
		nbCell{kind: "code", source: "import time\nprint('sleeping', flush=True)\ntime.sleep(120)"})})
	chdirTemp(t)
	clock := &lineClock{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- runner.Main(ctx, f.args("slow.ipynb"), os.Getenv, nil, clock, io.Discard) }()
	deadline := time.Now().Add(60 * time.Second)
	for clock.find("sleeping", false) < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the cell never started:\n%s", clock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := regexp.MustCompile(`kernel ready \(pid (\d+)\)`).FindStringSubmatch(clock.String())
	if m == nil {
		t.Fatalf("no kernel pid in the log:\n%s", clock)
	}
	pid, _ := strconv.Atoi(m[1])
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the step did not stop after cancellation")
	}
	if code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d, want %d (terminated)", code, 128+int(syscall.SIGTERM))
	}
	for i := 0; syscall.Kill(pid, 0) == nil; i++ {
		if i > 100 {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("kernel %d still runs after the step ended", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := f.store.Stat(context.Background(), runner.OutputNotebookKey(f.runDir, "slow.ipynb")); err != nil {
		t.Errorf("the executed notebook was not uploaded after cancellation: %v", err)
	}
}

// needPython skips without /usr/bin/python3, except under CI=true, where it fails.
func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /usr/bin/python3")
		}
		t.Skip("no /usr/bin/python3")
	}
}

// noNbclientPython writes an interpreter that cannot import nbclient: the real /usr/bin/python3
// without its site directories (where Debian's python3-nbclient lives).
func noNbclientPython(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "python3")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Ensure a missing nbclient (and no papermill) fails the step with a message naming what to install.
func TestNotebookMissingNbclient(t *testing.T) {
	needPython(t)
	bin := t.TempDir()
	t.Setenv("KFBRIDGE_NOTEBOOK_PYTHON", noNbclientPython(t, bin))
	t.Setenv("PATH", bin)
	f := newNotebookFixture(t, map[string]string{"a.ipynb": notebookJSON(t, "python3", nbCell{kind: "code", source: "print(1)"})})
	chdirTemp(t)
	var stdout bytes.Buffer
	code := runner.Main(context.Background(), f.args("a.ipynb"), os.Getenv, nil, &stdout, io.Discard)
	if code == 0 {
		t.Fatal("the step succeeded without nbclient")
	}
	for _, want := range []string{"cannot run notebook a.ipynb", "no module named", "nbclient", "papermill is not on PATH", "python3-nbclient", "python3-ipykernel"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("error lacks %q:\n%s", want, stdout.String())
		}
	}
}

// Ensure the papermill fallback runs papermill with live log output and the parameters, and
// uploads what it wrote. papermill is not installable here (PyPI only), so a shell script stands in
// for it and records its command line; the real papermill is not exercised.
func TestNotebookPapermillFallback(t *testing.T) {
	needPython(t)
	bin := t.TempDir()
	t.Setenv("KFBRIDGE_NOTEBOOK_PYTHON", noNbclientPython(t, bin))
	argsFile := filepath.Join(bin, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argsFile + "\necho 'papermill cell output'\ncp \"$1\" \"$2\"\n"
	if err := os.WriteFile(filepath.Join(bin, "papermill"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	src := notebookJSON(t, "python3", nbCell{kind: "code", source: "print(1)"})
	f := newNotebookFixture(t, map[string]string{"p.ipynb": src})
	chdirTemp(t)
	var stdout bytes.Buffer
	code := runner.Main(context.Background(), f.args("p.ipynb", "--pipeline-parameters", "alpha=3"), os.Getenv, nil, &stdout, io.Discard)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, stdout.String())
	}
	args, _ := os.ReadFile(argsFile)
	lines := strings.Split(strings.TrimSpace(string(args)), "\n")
	if len(lines) < 2 || lines[0] != "p.ipynb" || !strings.HasSuffix(lines[1], "p-output.ipynb") ||
		!strings.Contains(string(args), "--log-output\n") || !strings.Contains(string(args), "-p\nalpha\n3\n") {
		t.Errorf("papermill args:\n%s", args)
	}
	if !strings.Contains(stdout.String(), "papermill cell output") {
		t.Errorf("papermill output not in the log:\n%s", stdout.String())
	}
	if got := readObject(t, f.store, runner.OutputNotebookKey(f.runDir, "p.ipynb")); string(got) != src {
		t.Error("the notebook papermill wrote was not uploaded")
	}

	// Elyra's switch keeps cell outputs out of the bucket.
	t.Setenv("ELYRA_GENERIC_NODES_ENABLE_SCRIPT_OUTPUT_TO_S3", "false")
	f = newNotebookFixture(t, map[string]string{"p.ipynb": src})
	chdirTemp(t)
	stdout.Reset()
	if code := runner.Main(context.Background(), f.args("p.ipynb"), os.Getenv, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, stdout.String())
	}
	if _, err := f.store.Stat(context.Background(), runner.OutputNotebookKey(f.runDir, "p.ipynb")); err == nil {
		t.Error("executed notebook uploaded although ELYRA_GENERIC_NODES_ENABLE_SCRIPT_OUTPUT_TO_S3=false")
	}
}

// Ensure an R node runs with the real Rscript, live, and that a missing Rscript is a clear error.
func TestRNode(t *testing.T) {
	f := newNotebookFixture(t, map[string]string{"job.r": "cat('hello from R\\n')\ncat(Sys.getenv('ALPHA'), '\\n')\nquit(status = 4)\n"})
	t.Run("runs", func(t *testing.T) {
		if _, err := exec.LookPath("Rscript"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("Rscript not installed (apt-get install r-base-core)")
			}
			t.Skip("Rscript not installed")
		}
		chdirTemp(t)
		var stdout bytes.Buffer
		code := runner.Main(context.Background(), f.args("job.r", "--pipeline-parameters", "ALPHA=7"), os.Getenv, nil, &stdout, io.Discard)
		if code != 4 || !strings.Contains(stdout.String(), "hello from R\n7 \n") {
			t.Errorf("exit code %d (want the script's 4), stdout:\n%s", code, stdout.String())
		}
	})
	t.Run("missing Rscript", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		chdirTemp(t)
		var stdout bytes.Buffer
		code := runner.Main(context.Background(), f.args("job.r"), os.Getenv, nil, &stdout, io.Discard)
		if code == 0 || !strings.Contains(stdout.String(), "Rscript is not installed") || !strings.Contains(stdout.String(), "r-base-core") {
			t.Errorf("exit code %d, stdout:\n%s", code, stdout.String())
		}
	})
}

// Ensure KFP visualization files written by a node are validated, copied to the metrics directory
// and uploaded next to the step's log; an invalid one is reported and not passed on.
func TestKFPVisualizations(t *testing.T) {
	metricsDir := filepath.Join(t.TempDir(), "kfp")
	t.Setenv(runner.EnvMetricsDir, metricsDir)
	f := newNotebookFixture(t, map[string]string{"m.py": `import json
json.dump({"metrics": [{"name": "accuracy", "numberValue": 0.9, "format": "PERCENTAGE"}, {"name": "loss", "numberValue": 1}]}, open("mlpipeline-metrics.json", "w"))
json.dump({"outputs": [{"type": "markdown", "storage": "inline", "source": "# hi"}]}, open("mlpipeline-ui-metadata.json", "w"))
`, "bad.py": `import json
json.dump({"metrics": [{"name": "9 bad name", "numberValue": "x"}]}, open("mlpipeline-metrics.json", "w"))
`})
	chdirTemp(t)
	var stdout bytes.Buffer
	if code := runner.Main(context.Background(), f.args("m.py"), os.Getenv, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, stdout.String())
	}
	for _, name := range []string{runner.MetricsFile, runner.UIMetadataFile} {
		b, err := os.ReadFile(filepath.Join(metricsDir, name))
		if err != nil || !json.Valid(b) {
			t.Errorf("%s not copied to the metrics directory: %v", name, err)
		}
		if got := readObject(t, f.store, storage.StepKey(f.runDir, "step-1", name)); !bytes.Equal(got, b) {
			t.Errorf("%s uploaded differs from the copy", name)
		}
	}
	if !strings.Contains(stdout.String(), "mlpipeline-metrics.json (2 metric(s))") {
		t.Errorf("no visualization line:\n%s", stdout.String())
	}

	os.RemoveAll(metricsDir)
	chdirTemp(t)
	stdout.Reset()
	if code := runner.Main(context.Background(), f.args("bad.py"), os.Getenv, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("an invalid metrics file failed the step (exit %d):\n%s", code, stdout.String())
	}
	if !strings.Contains(stdout.String(), "mlpipeline-metrics.json is invalid") || !strings.Contains(stdout.String(), "must match") {
		t.Errorf("invalid metrics not reported:\n%s", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(metricsDir, runner.MetricsFile)); err == nil {
		t.Error("an invalid metrics file was copied")
	}
}

// notebookFixture is a local-directory store holding one node's archive.
type notebookFixture struct {
	storeDir, key, runDir string
	store                 storage.Store
}

func newNotebookFixture(t testing.TB, files map[string]string) *notebookFixture {
	t.Helper()
	src := t.TempDir()
	var names []string
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	var buf bytes.Buffer
	sum, err := storage.WriteArchive(&buf, src, names)
	if err != nil {
		t.Fatal(err)
	}
	f := &notebookFixture{storeDir: t.TempDir(), runDir: storage.RunDir("", "run-1")}
	if f.store, err = storage.Open(context.Background(), storage.Config{Endpoint: "file://" + f.storeDir, Bucket: "b"}); err != nil {
		t.Fatal(err)
	}
	f.key = storage.ArchiveKey("", "node", sum)
	if err := f.store.Put(context.Background(), f.key, &buf, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *notebookFixture) args(file string, extra ...string) []string {
	return append([]string{"kfbridge-step", "--cos-endpoint", "file://" + f.storeDir, "--cos-bucket", "b",
		"--cos-directory", f.runDir, "--archive-key", f.key, "--file", file, "--run-id", "run-1",
		"--step-id", "step-1", "--pipeline-name", "p"}, extra...)
}

func chdirTemp(t *testing.T) string {
	t.Helper()
	wd := t.TempDir()
	t.Chdir(wd)
	return wd
}

// Ensure notebooks that cannot start fail with a message saying why: not JSON, or a language
// without an installed kernel (naming the Debian package to install).
func TestNotebookCannotStart(t *testing.T) {
	needNotebooks(t)
	rNotebook := strings.Replace(notebookJSON(t, "ir", nbCell{kind: "code", source: "print(1)"}), `"language": "python"`, `"language": "R"`, 1)
	for name, tc := range map[string]struct{ src, want string }{
		"bad.ipynb": {"{not json", "notebook bad.ipynb: NotJSONError"},
		"r.ipynb":   {rNotebook, "no Jupyter kernel for this notebook: it asks for kernel 'ir' (language 'r')"},
	} {
		f := newNotebookFixture(t, map[string]string{name: tc.src})
		chdirTemp(t)
		var stdout bytes.Buffer
		code := runner.Main(context.Background(), f.args(name), os.Getenv, nil, &stdout, io.Discard)
		if code == 0 || !strings.Contains(stdout.String(), tc.want) || name == "r.ipynb" && !strings.Contains(stdout.String(), "install r-cran-irkernel") {
			t.Errorf("%s: exit code %d, stdout lacks %q:\n%s", name, code, tc.want, stdout.String())
		}
	}
}
