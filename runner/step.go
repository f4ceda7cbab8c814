package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/storage"
)

// step is one execution of a node.
type step struct {
	cfg    *config
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time

	store storage.Store
	sink  *sink
	push  *pusher

	// nb is set by notebookCommand for a notebook node (notebook.go); nil otherwise.
	nb *notebookRun
}

func (s *step) run(ctx context.Context) int {
	started := s.now()
	c := s.cfg
	logDir, err := os.MkdirTemp("", "kfbridge-step-")
	if err != nil {
		fmt.Fprintln(s.stderr, "kfbridge-step: create log dir:", err)
		return 1
	}
	defer os.RemoveAll(logDir)
	logTxt, err := os.Create(filepath.Join(logDir, "log.txt"))
	if err != nil {
		fmt.Fprintln(s.stderr, "kfbridge-step: create log file:", err)
		return 1
	}
	defer logTxt.Close()
	logND, err := os.Create(filepath.Join(logDir, "log.ndjson"))
	if err != nil {
		fmt.Fprintln(s.stderr, "kfbridge-step: create log file:", err)
		return 1
	}
	defer logND.Close()

	s.sink = newSink(s.stdout, s.stderr, logTxt, logND, s.now, logLimit(s.getenv))
	// log.ndjson is also the push spool and the source of the archive's segments and
	// log.ndjson.gz; both read it with ReadAt while the sink appends.
	arch, err := newLogArchive(c, s.getenv, s.sink, logDir, logTxt, logND)
	if err != nil {
		fmt.Fprintln(s.stderr, "kfbridge-step:", err)
		return 1
	}
	defer arch.close()
	pushCtx, stopPush := context.WithCancel(context.Background())
	defer stopPush()
	if c.pushURL != "" && c.runID != "" {
		s.push = newPusher(c.pushURL, c.runID, c.stepID, s.getenv("KFBRIDGE_PUSH_TOKEN"), s.sink, logND)
		go s.push.run(pushCtx)
	}
	go arch.run(ctx)

	exitCode, runErr := s.execute(ctx)
	if runErr != nil {
		s.sink.system("kfbridge-step: " + runErr.Error())
		if exitCode == 0 {
			exitCode = 1
		}
	}
	s.sink.system(fmt.Sprintf("step %q finished with exit code %d (%s)", c.stepLabel, exitCode, s.now().Sub(started).Round(time.Millisecond)))
	end := s.sink.end(exitCode)

	// The archive and the push path finish in parallel: a service that cannot be reached still
	// gets the complete log through the object store, and neither waits for the other.
	archived := make(chan error, 1)
	go func() {
		m := manifest{RunID: c.runID, StepID: c.stepID, StepLabel: c.stepLabel, File: c.file, FinalSeq: end.FinalSeq,
			Lines: end.Lines, Bytes: end.Bytes, SHA256: end.SHA256, Truncated: end.Truncated, ExitCode: exitCode,
			Started: started.UTC(), Finished: s.now().UTC(), Outputs: c.outputs}
		if runErr != nil {
			m.Error = runErr.Error()
		}
		archived <- arch.finish(ctx, m)
	}()
	if s.push != nil {
		if unsent, err := s.push.finish(end, pushGrace); unsent > 0 || err != nil {
			fmt.Fprintf(s.stderr, "kfbridge-step: %d lines were not pushed to the service (%v); they are in the archived log\n", unsent, err)
		}
	}
	if err := <-archived; err != nil {
		fmt.Fprintln(s.stderr, "kfbridge-step: archive log:", err)
	}
	return exitCode
}

// execute fetches the node's files, runs it and uploads its outputs. It returns the node's exit code
// and an error for failures of the runner itself.
func (s *step) execute(ctx context.Context) (int, error) {
	c := s.cfg
	var err error
	s.store, err = c.openStore(ctx, s.getenv)
	if err != nil {
		return 1, fmt.Errorf("open object store: %w", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	s.sink.system(fmt.Sprintf("kfbridge-step %s: '%s':'%s' starting in %s", Version, c.pipelineName, c.stepLabel, wd))

	archiveKey := c.archiveKey
	if archiveKey == "" {
		archiveKey = path.Join(c.directory, c.archive)
	}
	if err := s.fetchArchive(ctx, archiveKey, wd); err != nil {
		return 1, err
	}
	if err := s.fetchInputs(ctx, wd); err != nil {
		return 1, err
	}

	code, err := s.runFile(ctx, wd)
	// The executed notebook and KFP visualizations are collected whatever the outcome; fileErr is
	// the file's own failure (notebook.go, metrics.go), reported after the outputs upload.
	fileErr := s.collectResults(ctx, wd, code, err)
	if err != nil {
		return code, err
	}
	// Outputs are uploaded even when the file failed: what it produced helps to debug it, and
	// descendants do not run anyway.
	if upErr := s.uploadOutputs(ctx, wd); upErr != nil {
		if code == 0 {
			return 1, upErr
		}
		s.sink.system("kfbridge-step: " + upErr.Error())
	}
	return code, fileErr
}

func (s *step) fetchArchive(ctx context.Context, key, wd string) error {
	t := s.now()
	rc, err := s.store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("download dependency archive %s: %w", key, err)
	}
	defer rc.Close()
	if err := storage.ExtractArchive(ctx, rc, wd); err != nil {
		return fmt.Errorf("extract dependency archive %s: %w", key, err)
	}
	s.sink.system(fmt.Sprintf("extracted %s (%s)", path.Base(key), s.now().Sub(t).Round(time.Millisecond)))
	return nil
}

// command returns the program that runs the node's file.
func (s *step) command(wd string) (*exec.Cmd, error) {
	file := filepath.Base(s.cfg.file)
	switch strings.ToLower(filepath.Ext(file)) {
	case ".py":
		return exec.Command("python3", "-u", file), nil
	case ".r":
		rs, err := exec.LookPath("Rscript")
		if err != nil {
			return nil, errors.New("cannot run an R node: Rscript is not installed in this image (install r-base-core)")
		}
		return exec.Command(rs, file), nil
	case ".ipynb":
		return s.notebookCommand(wd, file)
	default:
		return nil, fmt.Errorf("cannot run %s: unsupported file type (want .py, .ipynb or .r)", file)
	}
}

// runFile runs the node's file in its own process group, forwarding SIGTERM and SIGINT to the
// group, and tees its output line by line.
func (s *step) runFile(ctx context.Context, wd string) (int, error) {
	cmd, err := s.command(wd)
	if err != nil {
		return 1, err
	}
	cmd.Dir = wd
	cmd.Env = s.childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return 1, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		s.nb.started(s.sink, err)
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return 1, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	// The child holds its own copies of the write ends; ours must close so the readers see EOF
	// when the child (and anything it spawned that kept the pipes) exits.
	outW.Close()
	errW.Close()
	// The notebook driver's framed output: cell markers and kernel output, in order (notebook.go).
	framesDone := s.nb.started(s.sink, nil)

	pumped := make(chan struct{}, 2)
	go func() { s.sink.pump(logstream.Stdout, outR); outR.Close(); pumped <- struct{}{} }()
	go func() { s.sink.pump(logstream.Stderr, errR); errR.Close(); pumped <- struct{}{} }()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	waitErr := make(chan error, 1)
	go func() { <-pumped; <-pumped; framesDone(); waitErr <- cmd.Wait() }()
	pgid := cmd.Process.Pid
	for {
		select {
		case sig := <-sigs:
			syscall.Kill(-pgid, sig.(syscall.Signal))
		case <-ctx.Done():
			// Cancellation (e.g. the local runtime stopping a run) is a SIGTERM to the group.
			syscall.Kill(-pgid, syscall.SIGTERM)
			ctx = context.Background()
		case err := <-waitErr:
			return exitCode(err)
		}
	}
}

// exitCode maps a Wait error to the code the runner exits with: the child's own code, or
// 128+signal when a signal killed it (the shell convention).
func exitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 1, err
}

// childEnv is the runner's environment plus what the node's code expects, minus the secrets only
// the runner needs.
func (s *step) childEnv() []string {
	c := s.cfg
	hidden := map[string]bool{"KFBRIDGE_PUSH_TOKEN": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true}
	var env []string
	set := map[string]bool{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if hidden[k] {
			continue
		}
		env = append(env, kv)
		set[k] = true
	}
	add := func(k, v string) {
		env = append(env, k+"="+v)
		set[k] = true
	}
	add("PYTHONUNBUFFERED", "1")
	if !set["ELYRA_RUNTIME_ENV"] {
		add("ELYRA_RUNTIME_ENV", "kfp")
	}
	if !set["ELYRA_RUN_NAME"] && c.runID != "" {
		add("ELYRA_RUN_NAME", c.runID)
	}
	add("KFBRIDGE_RUN_ID", c.runID)
	add("KFBRIDGE_STEP_ID", c.stepID)
	for _, p := range splitList(c.params) {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			continue
		}
		// An explicit env var of the same name wins, as in Elyra.
		if !set[k] {
			add(k, v)
		}
	}
	return env
}
