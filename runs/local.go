package runs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kfbridge/kfbridge/pipeline"
)

// Local runs every step as a kfbridge-step subprocess on this machine, with the same flags, object
// store protocol and log path a KFP pod uses. Independent steps run in parallel, up to Parallelism.
type Local struct {
	// StepCommand is the argv prefix that starts the step runner, e.g. ["/usr/bin/kfbridge-step"].
	StepCommand []string
	// WorkDir holds one fresh working directory per step (<WorkDir>/<run>/<step>).
	WorkDir string
	// PushURL is the kfbridge service URL steps push their lines to.
	PushURL     string
	Parallelism int
	// Env is the base environment of steps (the server's, minus its own secrets).
	Env    []string
	Logger *slog.Logger
}

// Name implements Runtime.
func (l *Local) Name() string { return "local" }

// killGrace is how long a cancelled step has between SIGTERM and SIGKILL.
const killGrace = 10 * time.Second

// Execute implements Runtime: it starts every step whose parents all succeeded, and marks a step
// skipped as soon as one of its parents did not succeed.
func (l *Local) Execute(ctx context.Context, job *Job, rep Reporter) error {
	p := job.Pipeline
	order, err := pipeline.TopoOrder(p)
	if err != nil {
		return err
	}
	par := l.Parallelism
	if par <= 0 {
		par = 4
	}
	type result struct {
		id   string
		code int
		err  error
	}
	status := map[string]string{}
	results := make(chan result)
	sem := make(chan struct{}, par)
	running := 0
	var wg sync.WaitGroup
	defer wg.Wait()

	for {
		// Start or skip everything that is decided by its parents' outcomes.
		progressed := true
		for progressed {
			progressed = false
			for _, n := range order {
				if status[n.ID] != "" {
					continue
				}
				ready, blocked := true, false
				for _, pid := range n.Parents {
					switch status[pid] {
					case StatusSucceeded:
					case "", StatusRunning:
						ready = false
					default:
						blocked = true
					}
				}
				switch {
				case blocked:
					status[n.ID] = StatusSkipped
					rep.StepStatus(n.ID, StatusSkipped, nil, "an upstream step did not succeed")
					progressed = true
				case ready && ctx.Err() == nil:
					status[n.ID] = StatusRunning
					running++
					wg.Add(1)
					go func(n *pipeline.Node) {
						defer wg.Done()
						select {
						case sem <- struct{}{}:
						case <-ctx.Done():
							results <- result{id: n.ID, err: ctx.Err()}
							return
						}
						defer func() { <-sem }()
						rep.StepStatus(n.ID, StatusRunning, nil, "")
						code, err := l.runStep(ctx, job, n)
						results <- result{id: n.ID, code: code, err: err}
					}(n)
				}
			}
		}
		if running == 0 {
			return nil
		}
		res := <-results
		running--
		code := res.code
		switch {
		case res.err != nil && ctx.Err() != nil:
			status[res.id] = StatusCancelled
			rep.StepStatus(res.id, StatusCancelled, nil, "run cancelled")
		case res.err != nil:
			status[res.id] = StatusFailed
			rep.StepStatus(res.id, StatusFailed, nil, res.err.Error())
		case code == 0:
			status[res.id] = StatusSucceeded
			rep.StepStatus(res.id, StatusSucceeded, &code, "")
		case ctx.Err() != nil:
			status[res.id] = StatusCancelled
			rep.StepStatus(res.id, StatusCancelled, &code, "run cancelled")
		default:
			status[res.id] = StatusFailed
			rep.StepStatus(res.id, StatusFailed, &code, fmt.Sprintf("exited with code %d", code))
		}
	}
}

// runStep runs one node through the step runner in a fresh working directory and returns its exit
// code. An error means the runner could not be started at all.
func (l *Local) runStep(ctx context.Context, job *Job, n *pipeline.Node) (int, error) {
	wd := filepath.Join(l.WorkDir, job.RunID, n.ID)
	if err := os.MkdirAll(wd, 0o700); err != nil {
		return 0, fmt.Errorf("create working directory: %w", err)
	}
	args := append([]string(nil), l.StepCommand[1:]...)
	args = append(args, StepArgs(job, n)...)
	args = append(args, "--push-url", l.PushURL)
	cmd := exec.Command(l.StepCommand[0], args...)
	cmd.Dir = wd
	cmd.Env = append(append([]string(nil), l.Env...), StepEnv(job, n)...)
	cmd.Env = append(cmd.Env, "KFBRIDGE_PUSH_TOKEN="+job.PushToken, "ELYRA_RUNTIME_ENV=local")
	// The runner's own stdout is what a KFP pod log would show; locally it is kept beside the
	// working directory for debugging, while viewers get the same lines through the push path.
	out, err := os.Create(filepath.Join(l.WorkDir, job.RunID, n.ID+".stdout"))
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start step runner %s: %w", l.StepCommand[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The runner forwards SIGTERM to the node's process group and still archives the log.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(killGrace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	if err == nil {
		os.RemoveAll(wd)
		return 0, nil
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// StepArgs returns the kfbridge-step flags for a node (docs/step-runner.md), without --push-url.
// Every runtime uses it, so a step gets the same command line locally and in a pod.
func StepArgs(job *Job, n *pipeline.Node) []string {
	a := job.Archives[n.ID]
	args := []string{
		"--cos-endpoint", job.Store.Endpoint,
		"--cos-bucket", job.Store.Bucket,
		"--cos-directory", job.RunDir,
		"--cos-dependencies-archive", path.Base(a.Key),
		"--archive-key", a.Key,
		"--file", n.Filename,
		"--pipeline-name", job.Name,
		"--run-id", job.RunID,
		"--step-id", n.ID,
		"--step-label", n.Label,
	}
	if job.Store.Region != "" {
		args = append(args, "--region", job.Store.Region)
	}
	var inputs []string
	for _, id := range pipeline.Ancestors(job.Pipeline, n.ID) {
		if an := job.Pipeline.Node(id); an != nil {
			inputs = append(inputs, an.Outputs...)
		}
	}
	if len(inputs) > 0 {
		args = append(args, "--inputs", strings.Join(inputs, ";"))
	}
	if len(n.Outputs) > 0 {
		args = append(args, "--outputs", strings.Join(n.Outputs, ";"))
	}
	if params := stepParams(job.Pipeline, n); params != "" {
		args = append(args, "--pipeline-parameters", params, "--parameter-pass-method", "env")
	}
	return args
}

func stepParams(p *pipeline.Pipeline, n *pipeline.Node) string {
	var parts []string
	for _, name := range n.PipelineParameters {
		for _, pp := range p.Parameters {
			if pp.Name == name {
				if v := pp.Effective(); v != nil {
					parts = append(parts, name+"="+fmt.Sprint(v))
				}
			}
		}
	}
	return strings.Join(parts, ";")
}

// StepEnv is the node's own environment (env_vars). Kubernetes secrets cannot be resolved outside a
// cluster and are not set locally.
func StepEnv(job *Job, n *pipeline.Node) []string {
	var env []string
	for _, e := range n.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}
