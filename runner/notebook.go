package runner

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/storage"
)

// driverSource is the nbclient driver. It travels inside the binary so a step image needs nothing
// but a Python with nbclient and a kernel (Debian: python3-nbclient python3-ipykernel).
//
//go:embed driver.py
var driverSource []byte

// Notebook execution settings.
const (
	// envNotebookPython names the one interpreter to run the driver with, instead of trying
	// pythonCandidates (for images whose Jupyter lives elsewhere, and for tests).
	envNotebookPython = "KFBRIDGE_NOTEBOOK_PYTHON"
	// driverChannelFD is the descriptor the driver writes its frames to (ExtraFiles[0]).
	driverChannelFD = 3
	// maxFrame bounds one frame line; the driver cuts lines at 64 KiB of text, so a longer
	// frame is not from the driver.
	maxFrame = 8 << 20
	// probeTimeout bounds the check whether an interpreter can import nbclient.
	probeTimeout = 30 * time.Second
	// installHint is what an image needs to run notebooks.
	installHint = "install python3-nbclient and python3-ipykernel (Debian/Ubuntu: apt-get install --no-install-recommends python3-nbclient python3-ipykernel), or put papermill on PATH"
)

// pythonCandidates are tried in order; the first that can import nbclient runs the driver. PATH's
// python3 comes first so a Jupyter image's own environment (conda, venv) wins; /usr/bin/python3 is
// where Debian's python3-nbclient lives when PATH starts with another Python (pyenv, a venv
// without Jupyter).
var pythonCandidates = []string{"python3", "/usr/bin/python3"}

// probeScript exits 0 when the modules the driver imports are installed. find_spec does not
// import them, so the probe costs an interpreter start, not a Jupyter import.
const probeScript = `import importlib.util as u, sys
missing = [m for m in ("nbclient", "nbformat", "jupyter_client") if u.find_spec(m) is None]
sys.exit("no module named " + ", ".join(missing) if missing else 0)`

// notebookRun is the execution of one notebook node: how it runs, where the executed notebook
// goes and how the driver reported a failure.
type notebookRun struct {
	mode   string // "nbclient" (the embedded driver) or "papermill"
	source string // node file, workspace-relative
	tmp    string // holds driver.py and the executed notebook, outside the working directory
	output string // executed notebook path

	// chanR/chanW carry the driver's frames (nbclient mode only).
	chanR, chanW *os.File
	fail         *driverFailure
}

// driverFailure is the driver's report of what failed.
type driverFailure struct {
	Cell   int    `json:"cell"`
	Ename  string `json:"ename"`
	Evalue string `json:"evalue"`
}

func (f *driverFailure) Error() string {
	if f.Cell > 0 {
		return fmt.Sprintf("cell %d: %s: %s", f.Cell, f.Ename, f.Evalue)
	}
	return fmt.Sprintf("%s: %s", f.Ename, f.Evalue)
}

// frame is one line of the driver's channel.
type frame struct {
	Kind    string `json:"k"`
	Text    string `json:"t"`
	Partial bool   `json:"p"`
	driverFailure
}

// outputName is the executed notebook's name: <stem>-output.ipynb next to the source, which can
// never be the source's own name.
func outputName(file string) string {
	base := path.Base(filepath.ToSlash(file))
	return strings.TrimSuffix(base, path.Ext(base)) + "-output.ipynb"
}

// OutputNotebookKey is the object key the executed notebook of the node file (workspace-relative)
// is uploaded to in the run directory.
func OutputNotebookKey(runDir, file string) string {
	return storage.OutputKey(runDir, path.Join(path.Dir(filepath.ToSlash(file)), outputName(file)))
}

// notebookCommand returns the command that executes a notebook node: the embedded nbclient driver
// under the first Python that can import nbclient, else papermill, else an error naming what to
// install. The source notebook is only read; the executed one is written to a temporary
// directory and uploaded after the run.
func (s *step) notebookCommand(wd, file string) (*exec.Cmd, error) {
	tmp, err := os.MkdirTemp("", "kfbridge-nb-")
	if err != nil {
		return nil, fmt.Errorf("notebook %s: create temp dir: %w", file, err)
	}
	nb := &notebookRun{source: s.cfg.file, tmp: tmp, output: filepath.Join(tmp, outputName(file))}
	names, values := s.parameters()

	py, tried := s.findNotebookPython(wd)
	if py != "" {
		driver := filepath.Join(tmp, "driver.py")
		if err := os.WriteFile(driver, driverSource, 0o600); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("notebook %s: write driver: %w", file, err)
		}
		params, err := orderedJSON(names, values)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		nb.chanR, nb.chanW, err = os.Pipe()
		if err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("notebook %s: %w", file, err)
		}
		nb.mode = "nbclient"
		cmd := exec.Command(py, driver, "--notebook", file, "--output", nb.output,
			"--parameters", params, "--channel-fd", fmt.Sprint(driverChannelFD))
		cmd.ExtraFiles = []*os.File{nb.chanW}
		s.nb = nb
		s.sink.system(fmt.Sprintf("executing %s with nbclient (%s)", file, py))
		return cmd, nil
	}
	if pm, err := exec.LookPath("papermill"); err == nil {
		// papermill streams cell output with --log-output but has no cell markers; it picks the
		// notebook's own kernel.
		args := []string{file, nb.output, "--log-output", "--no-progress-bar"}
		for i, n := range names {
			args = append(args, "-p", n, values[i])
		}
		nb.mode = "papermill"
		s.nb = nb
		s.sink.system(fmt.Sprintf("executing %s with papermill (%s); no Python here can import nbclient (%s)", file, pm, strings.Join(tried, "; ")))
		return exec.Command(pm, args...), nil
	}
	os.RemoveAll(tmp)
	return nil, fmt.Errorf("cannot run notebook %s: no Python here can import nbclient (%s) and papermill is not on PATH; %s",
		file, strings.Join(tried, "; "), installHint)
}

// findNotebookPython returns the first interpreter, in candidate order, that can import the
// driver's modules, and a description of every one that cannot. The probes run concurrently: an
// interpreter start is slow where python3 is a pyenv shim.
func (s *step) findNotebookPython(wd string) (string, []string) {
	candidates := pythonCandidates
	if p := s.getenv(envNotebookPython); p != "" {
		candidates = []string{p}
	}
	type probe struct {
		name, path, why string
		duplicate       bool // resolves to an interpreter probed already
		done            chan struct{}
	}
	env := s.childEnv()
	var probes []*probe
	seen := map[string]bool{}
	for _, c := range candidates {
		pr := &probe{name: c, done: make(chan struct{})}
		probes = append(probes, pr)
		p, err := exec.LookPath(c)
		if err != nil {
			pr.why = "not found"
			close(pr.done)
			continue
		}
		if seen[p] {
			pr.duplicate = true
			close(pr.done)
			continue
		}
		seen[p] = true
		pr.path = p
		go func() {
			defer close(pr.done)
			ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, p, "-c", probeScript)
			cmd.Dir, cmd.Env = wd, env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				why := strings.TrimSpace(stderr.String())
				if i := strings.LastIndexByte(why, '\n'); i >= 0 {
					why = why[i+1:]
				}
				if why == "" {
					why = err.Error()
				}
				pr.why = why
			}
		}()
	}
	var tried []string
	for _, pr := range probes {
		<-pr.done
		switch {
		case pr.duplicate:
		case pr.why == "":
			// Later probes finish on their own; their processes end with the probe timeout at worst.
			return pr.path, tried
		case pr.path != "" && pr.path != pr.name:
			tried = append(tried, pr.name+" ("+pr.path+"): "+pr.why)
		default:
			tried = append(tried, pr.name+": "+pr.why)
		}
	}
	return "", tried
}

// parameters returns the pipeline parameter names in flag order and the values the node's code
// sees: the environment's, so an explicit env var wins here exactly as it does for env.
func (s *step) parameters() ([]string, []string) {
	env := map[string]string{}
	for _, kv := range s.childEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var names, values []string
	seen := map[string]bool{}
	for _, p := range splitList(s.cfg.params) {
		k, _, ok := strings.Cut(p, "=")
		if !ok || k == "" || seen[k] {
			continue
		}
		seen[k] = true
		names = append(names, k)
		values = append(values, env[k])
	}
	return names, values
}

// orderedJSON encodes names/values as a JSON object keeping their order, so injected parameters
// appear in the order the pipeline lists them.
func orderedJSON(names, values []string) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(n)
		if err != nil {
			return "", err
		}
		v, err := json.Marshal(values[i])
		if err != nil {
			return "", err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// started is called once the child started (or failed to start). For the nbclient driver it
// closes the runner's copy of the channel's write end and emits the driver's frames as they
// arrive; the returned function blocks until the channel is drained. It is a no-op for other
// nodes (nb is nil).
func (nb *notebookRun) started(sk *sink, startErr error) (wait func()) {
	if nb == nil || nb.chanR == nil {
		return func() {}
	}
	nb.chanW.Close()
	if startErr != nil {
		nb.chanR.Close()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer nb.chanR.Close()
		nb.fail = readFrames(sk, nb.chanR)
	}()
	return func() { <-done }
}

// readFrames emits the driver's frames in order until EOF and returns the failure it reported.
// A line that is not a frame is shown as driver stderr rather than dropped.
func readFrames(sk *sink, r io.Reader) *driverFailure {
	var fail *driverFailure
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > maxFrame {
			line = line[:maxFrame]
		}
		if line = bytes.TrimRight(line, "\n"); len(line) > 0 {
			var f frame
			switch {
			case json.Unmarshal(line, &f) != nil:
				sk.emit(logstream.Stderr, line, false)
			case f.Kind == "fail":
				fd := f.driverFailure
				fail = &fd
			case f.Kind == logstream.System:
				sk.system(f.Text)
			case f.Kind == logstream.Stdout || f.Kind == logstream.Stderr:
				sk.emit(f.Kind, []byte(f.Text), f.Partial)
			default:
				sk.emit(logstream.Stderr, line, false)
			}
		}
		if err != nil {
			return fail
		}
	}
}

// finish uploads the executed notebook (also after a failing cell) and returns the notebook's
// failure as "cell N: ename: evalue" when the driver exited non-zero.
func (nb *notebookRun) finish(ctx context.Context, s *step, code int) error {
	var fail error
	if code != 0 && code < 128 {
		f := nb.fail
		if f == nil {
			f = notebookError(nb.output)
		}
		switch {
		case f != nil && f.Cell == 0:
			fail = fmt.Errorf("notebook %s: %w", path.Base(nb.source), f)
		case f != nil:
			fail = f
		}
	}
	if _, err := os.Stat(nb.output); err != nil {
		if fail != nil {
			return fail
		}
		if code == 0 {
			return fmt.Errorf("notebook %s: %s did not write the executed notebook", nb.source, nb.mode)
		}
		return nil
	}
	if s.getenv("ELYRA_GENERIC_NODES_ENABLE_SCRIPT_OUTPUT_TO_S3") == "false" {
		// Elyra's switch for sites that must not store cell outputs (they may hold data).
		s.sink.system("executed notebook not uploaded (ELYRA_GENERIC_NODES_ENABLE_SCRIPT_OUTPUT_TO_S3=false)")
		return fail
	}
	key := OutputNotebookKey(s.cfg.directory, nb.source)
	t := s.now()
	// A fresh context: the executed notebook matters most when the step was cancelled or failed.
	upCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := storage.PutFile(upCtx, s.store, key, nb.output); err != nil {
		err = fmt.Errorf("upload executed notebook %s: %w", key, err)
		if fail != nil {
			s.sink.system("kfbridge-step: " + err.Error())
			return fail
		}
		return err
	}
	rel := strings.TrimPrefix(key, strings.TrimSuffix(s.cfg.directory, "/")+"/")
	s.sink.system(fmt.Sprintf("uploaded executed notebook %s (%s)", rel, s.now().Sub(t).Round(time.Millisecond)))
	return fail
}

// cleanup removes the driver and the executed notebook's temporary directory.
func (nb *notebookRun) cleanup() {
	if nb != nil && nb.tmp != "" {
		os.RemoveAll(nb.tmp)
	}
}

// notebookError finds the first error output in an executed notebook (papermill mode, or a driver
// that died before reporting). The cell number is the cell's execution count, as the driver's is.
func notebookError(file string) *driverFailure {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var nb struct {
		Cells []struct {
			CellType       string `json:"cell_type"`
			ExecutionCount *int   `json:"execution_count"`
			Outputs        []struct {
				OutputType string `json:"output_type"`
				Ename      string `json:"ename"`
				Evalue     string `json:"evalue"`
			} `json:"outputs"`
		} `json:"cells"`
	}
	if json.Unmarshal(b, &nb) != nil {
		return nil
	}
	for _, c := range nb.Cells {
		for _, o := range c.Outputs {
			if o.OutputType == "error" {
				f := &driverFailure{Ename: o.Ename, Evalue: o.Evalue}
				if c.ExecutionCount != nil {
					f.Cell = *c.ExecutionCount
				}
				return f
			}
		}
	}
	return nil
}

// collectResults runs after the node's file, whatever its outcome: it uploads the executed
// notebook and places KFP visualization files. The returned error is the file's own failure
// (e.g. "cell 3: ZeroDivisionError: division by zero"), reported after the outputs upload.
func (s *step) collectResults(ctx context.Context, wd string, code int, runErr error) error {
	defer s.nb.cleanup()
	if runErr != nil {
		return nil
	}
	var fileErr error
	if s.nb != nil {
		fileErr = s.nb.finish(ctx, s, code)
	}
	s.collectVisualizations(ctx, wd)
	return fileErr
}
