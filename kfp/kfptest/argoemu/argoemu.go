// Package argoemu is a test-only Argo emulator for the fake KFP server (kfptest): an Executor that
// runs a stored run's DAG by executing each step's container command as a local process, the way
// the Argo workflow controller and kubelet would run its pod. It understands what kfbridge's two
// compilers emit:
//
//   - v1 (Argo Workflow): template inputs, task arguments and workflow parameters are substituted
//     into the container's command, args and env ({{inputs.parameters.x}}, {{workflow.uid}}, …);
//     init containers that run `kfbridge-step cp SRC DST` are simulated by running the real binary's
//     cp into the emptyDir volume they share with the main container (a temporary directory);
//     env from secretKeyRef is resolved from Secrets.
//   - v2 (IR PipelineSpec + Kubernetes platform spec): task input parameters (runtime constants,
//     pipeline parameters, {{$.pipeline_job_uuid}}) are substituted into the executor's command and
//     args; secretAsEnv of the platform spec is resolved from Secrets; the `sh -c` script that
//     downloads the runner from its presigned URL and checks its sha256 runs for real.
//
// Each step runs in its own temporary working directory, in its own process group, in parallel
// wherever the DAG allows. Statuses go to the fake through FakeRun.SetStep (running, then succeeded
// or failed with the exit code; steps after a failure are omitted), so GET run shows them as KFP
// would. Terminating the run (ctx cancelled) sends SIGTERM, then SIGKILL after KillGrace.
//
// It is a normal package so tests of several packages can use it; only tests import it.
package argoemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

// Emulator runs fake runs' steps as local processes. Its exported fields must not change once the
// server uses it.
type Emulator struct {
	// StepBinary is the kfbridge-step the runner image would contain (/usr/local/bin/kfbridge-step).
	StepBinary string
	// Secrets are the Kubernetes Secrets of the namespace: secret name -> key -> value.
	Secrets map[string]map[string]string
	// Env is the base environment of every step process; nil means this process's environment
	// without AWS_* and KFBRIDGE_* variables (a pod does not inherit the test's credentials).
	Env []string
	// WorkDir holds the steps' temporary directories; "" means os.TempDir().
	WorkDir string
	// KillGrace is the time between SIGTERM and SIGKILL on termination (default 5 s).
	KillGrace time.Duration

	mu      sync.Mutex
	outputs map[string]*syncBuffer // run ID + "/" + step -> combined stdout/stderr
}

// Output returns what a step's process wrote to stdout and stderr (its "pod log").
func (e *Emulator) Output(runID, step string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b := e.outputs[runID+"/"+step]; b != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.b.String()
	}
	return ""
}

// Start implements kfptest.Executor.
func (e *Emulator) Start(ctx context.Context, run *kfptest.FakeRun) {
	var specs map[string]*procSpec
	var err error
	if run.Workflow != nil {
		specs, err = e.argoSpecs(run)
	} else {
		specs, err = e.irSpecs(run)
	}
	if err != nil {
		run.SetPhase(kfptest.PhaseError, "argoemu: "+err.Error())
		return
	}
	type result struct {
		name string
		ok   bool
	}
	done := make(chan result)
	state := map[string]string{} // step -> "", "running", "ok", "failed"
	running := 0
	for {
		for _, st := range run.Steps {
			if state[st.Name] != "" {
				continue
			}
			ready, blocked := true, false
			for _, d := range st.Dependencies {
				switch state[d] {
				case "ok":
				case "", "running":
					ready = false
				default:
					blocked = true
				}
			}
			switch {
			case blocked:
				state[st.Name] = "omitted"
				run.SetStep(st.Name, kfptest.StepUpdate{Phase: kfptest.PhaseOmitted, Message: "omitted: depends condition not met"})
			case ready && ctx.Err() == nil:
				state[st.Name] = "running"
				running++
				go func(name string) {
					done <- result{name: name, ok: e.runStep(ctx, run, name, specs[name])}
				}(st.Name)
			}
		}
		if running == 0 {
			return
		}
		r := <-done
		running--
		if r.ok {
			state[r.name] = "ok"
		} else {
			state[r.name] = "failed"
		}
	}
}

// procSpec is a step's pod reduced to what runs locally.
type procSpec struct {
	command []string
	env     []string
	// copies are simulated init containers: the runner binary copied to these local paths.
	copies []string
	tmp    string
	err    error // a pod that could not start (e.g. a missing secret)
}

// runStep runs one step and reports it; true if it succeeded.
func (e *Emulator) runStep(ctx context.Context, run *kfptest.FakeRun, name string, ps *procSpec) bool {
	run.SetStep(name, kfptest.StepUpdate{Phase: kfptest.PhaseRunning})
	fail := func(code int, msg string) bool {
		run.SetStep(name, kfptest.StepUpdate{Phase: kfptest.PhaseFailed, ExitCode: &code, Message: msg})
		return false
	}
	if ps == nil {
		return fail(1, "argoemu: no container for step "+name)
	}
	if ps.tmp != "" {
		defer os.RemoveAll(ps.tmp)
	}
	if ps.err != nil {
		return fail(1, ps.err.Error())
	}
	out := &syncBuffer{}
	e.mu.Lock()
	if e.outputs == nil {
		e.outputs = map[string]*syncBuffer{}
	}
	e.outputs[run.ID+"/"+name] = out
	e.mu.Unlock()
	for _, dst := range ps.copies {
		// The init container: the runner image's own kfbridge-step copies itself.
		cp := exec.CommandContext(ctx, e.StepBinary, "cp", e.StepBinary, dst)
		cp.Stdout, cp.Stderr = out, out
		if err := cp.Run(); err != nil {
			return fail(1, fmt.Sprintf("init container kfbridge-init failed: %v", err))
		}
	}
	wd := filepath.Join(ps.tmp, "work")
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return fail(1, err.Error())
	}
	cmd := exec.Command(ps.command[0], ps.command[1:]...)
	cmd.Dir = wd
	cmd.Env = ps.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail(128, fmt.Sprintf("start container: %v", err))
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	var err error
	select {
	case err = <-waitc:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		grace := e.KillGrace
		if grace <= 0 {
			grace = 5 * time.Second
		}
		select {
		case err = <-waitc:
		case <-time.After(grace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-waitc
		}
		// The fake marks the node failed by the deadline, as Argo does after terminate.
		return false
	}
	if err == nil {
		zero := 0
		run.SetStep(name, kfptest.StepUpdate{Phase: kfptest.PhaseSucceeded, ExitCode: &zero})
		return true
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			code = 137
		}
		return fail(code, fmt.Sprintf("Error (exit code %d)", code))
	}
	return fail(1, err.Error())
}

// ---- v1: Argo Workflow ----

var argoExpr = regexp.MustCompile(`\{\{\s*([^{}]+?)\s*\}\}`)

// argoSubst replaces {{inputs.parameters.x}}, {{workflow.parameters.x}}, {{workflow.uid}} and
// {{workflow.name}}; unknown expressions are left as they are (Argo would fail the pod).
func argoSubst(s string, inputs, wfParams map[string]string, uid, wfName string) string {
	return argoExpr.ReplaceAllStringFunc(s, func(m string) string {
		expr := strings.TrimSpace(m[2 : len(m)-2])
		switch {
		case expr == "workflow.uid":
			return uid
		case expr == "workflow.name":
			return wfName
		case strings.HasPrefix(expr, "inputs.parameters."):
			if v, ok := inputs[strings.TrimPrefix(expr, "inputs.parameters.")]; ok {
				return v
			}
		case strings.HasPrefix(expr, "workflow.parameters."):
			if v, ok := wfParams[strings.TrimPrefix(expr, "workflow.parameters.")]; ok {
				return v
			}
		}
		return m
	})
}

func (e *Emulator) argoSpecs(run *kfptest.FakeRun) (map[string]*procSpec, error) {
	wf := run.Workflow
	meta := mapOf(wf["metadata"])
	spec := mapOf(wf["spec"])
	uid, wfName := str(meta["uid"]), str(meta["name"])
	wfParams := map[string]string{}
	for _, p := range sliceOf(mapOf(spec["arguments"])["parameters"]) {
		pm := mapOf(p)
		wfParams[str(pm["name"])] = str(pm["value"])
	}
	templates := map[string]map[string]any{}
	for _, t := range sliceOf(spec["templates"]) {
		tm := mapOf(t)
		templates[str(tm["name"])] = tm
	}
	entry := templates[str(spec["entrypoint"])]
	if entry == nil {
		return nil, fmt.Errorf("entrypoint %q is not a template", str(spec["entrypoint"]))
	}
	// The entrypoint DAG's inputs come from the workflow's arguments.
	dagInputs := map[string]string{}
	for _, p := range sliceOf(mapOf(entry["inputs"])["parameters"]) {
		pm := mapOf(p)
		n := str(pm["name"])
		if v, ok := wfParams[n]; ok {
			dagInputs[n] = v
		} else if pm["value"] != nil {
			dagInputs[n] = str(pm["value"])
		}
	}
	tasks := map[string]map[string]any{}
	for _, t := range sliceOf(mapOf(entry["dag"])["tasks"]) {
		tm := mapOf(t)
		tasks[str(tm["name"])] = tm
	}
	out := map[string]*procSpec{}
	for _, st := range run.Steps {
		task := tasks[st.Name]
		tmpl := templates[st.Template]
		if tmpl == nil {
			return nil, fmt.Errorf("step %s: template %q not found", st.Name, st.Template)
		}
		inputs := map[string]string{}
		for _, p := range sliceOf(mapOf(tmpl["inputs"])["parameters"]) {
			pm := mapOf(p)
			if pm["value"] != nil {
				inputs[str(pm["name"])] = str(pm["value"])
			} else if d := mapOf(pm)["default"]; d != nil {
				inputs[str(pm["name"])] = str(d)
			}
		}
		for _, a := range sliceOf(mapOf(task["arguments"])["parameters"]) {
			am := mapOf(a)
			inputs[str(am["name"])] = argoSubst(str(am["value"]), dagInputs, wfParams, uid, wfName)
		}
		sub := func(s string) string { return argoSubst(s, inputs, wfParams, uid, wfName) }
		ps, err := e.newProc(run, st.Name)
		if err != nil {
			return nil, err
		}
		out[st.Name] = ps
		// emptyDir volumes become directories shared by the init and main containers.
		volumes := map[string]string{}
		for _, v := range sliceOf(tmpl["volumes"]) {
			vm := mapOf(v)
			if vm["emptyDir"] != nil {
				dir := filepath.Join(ps.tmp, "vol-"+str(vm["name"]))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, err
				}
				volumes[str(vm["name"])] = dir
			}
		}
		mapPath := func(c map[string]any, p string) string {
			for _, m := range sliceOf(c["volumeMounts"]) {
				mm := mapOf(m)
				mp := strings.TrimRight(str(mm["mountPath"]), "/")
				if dir, ok := volumes[str(mm["name"])]; ok && (p == mp || strings.HasPrefix(p, mp+"/")) {
					return dir + strings.TrimPrefix(p, mp)
				}
			}
			return p
		}
		for _, ic := range sliceOf(tmpl["initContainers"]) {
			icm := mapOf(ic)
			argv := append(strSlice(icm["command"]), strSlice(icm["args"])...)
			if len(argv) != 4 || filepath.Base(argv[0]) != "kfbridge-step" || argv[1] != "cp" {
				ps.err = fmt.Errorf("argoemu: init container %q runs %q; only `kfbridge-step cp SRC DST` is emulated", str(icm["name"]), argv)
				break
			}
			ps.copies = append(ps.copies, mapPath(icm, argv[3]))
		}
		c := mapOf(tmpl["container"])
		var argv []string
		for _, x := range append(strSlice(c["command"]), strSlice(c["args"])...) {
			argv = append(argv, sub(x))
		}
		if len(argv) == 0 {
			return nil, fmt.Errorf("step %s: container has no command", st.Name)
		}
		argv[0] = mapPath(c, argv[0])
		ps.command = argv
		env := e.baseEnv()
		for _, ev := range sliceOf(c["env"]) {
			em := mapOf(ev)
			name := str(em["name"])
			if ref := mapOf(mapOf(em["valueFrom"])["secretKeyRef"]); ref != nil {
				v, err := e.secret(str(ref["name"]), str(ref["key"]))
				if err != nil && ps.err == nil {
					ps.err = err
				}
				env = append(env, name+"="+v)
				continue
			}
			env = append(env, name+"="+sub(str(em["value"])))
		}
		ps.env = env
	}
	return out, nil
}

// ---- v2: IR ----

var irExpr = regexp.MustCompile(`\{\{\$\.(inputs\.parameters\['([^']+)'\]|pipeline_job_uuid|pipeline_job_name)\}\}`)

func (e *Emulator) irSpecs(run *kfptest.FakeRun) (map[string]*procSpec, error) {
	ir := run.PipelineSpec
	root := mapOf(ir["root"])
	tasks := mapOf(mapOf(root["dag"])["tasks"])
	comps := mapOf(ir["components"])
	execs := mapOf(mapOf(ir["deploymentSpec"])["executors"])
	rootParams := mapOf(mapOf(root["inputDefinitions"])["parameters"])
	platExecs := mapOf(mapOf(mapOf(mapOf(run.PlatformSpec["platforms"])["kubernetes"])["deploymentSpec"])["executors"])
	global := func(m string) string {
		switch m {
		case "{{$.pipeline_job_uuid}}":
			return run.ID
		case "{{$.pipeline_job_name}}":
			return run.Name
		}
		return m
	}
	out := map[string]*procSpec{}
	for _, st := range run.Steps {
		task := mapOf(tasks[st.Name])
		label := str(mapOf(comps[str(mapOf(task["componentRef"])["name"])])["executorLabel"])
		c := mapOf(mapOf(execs[label])["container"])
		if c == nil {
			return nil, fmt.Errorf("step %s: executor %q has no container", st.Name, label)
		}
		inputs := map[string]string{}
		for name, v := range mapOf(mapOf(task["inputs"])["parameters"]) {
			vm := mapOf(v)
			switch {
			case mapOf(vm["runtimeValue"]) != nil:
				inputs[name] = irExpr.ReplaceAllStringFunc(irValue(mapOf(vm["runtimeValue"])["constant"]), global)
			case vm["componentInputParameter"] != nil:
				pn := str(vm["componentInputParameter"])
				if pv, ok := run.Parameters[pn]; ok {
					inputs[name] = irValue(pv)
				} else if d, ok := mapOf(rootParams[pn])["defaultValue"]; ok {
					inputs[name] = irValue(d)
				}
			}
		}
		sub := func(s string) string {
			return irExpr.ReplaceAllStringFunc(s, func(m string) string {
				if sm := irExpr.FindStringSubmatch(m); sm[2] != "" {
					if v, ok := inputs[sm[2]]; ok {
						return v
					}
					return m
				}
				return global(m)
			})
		}
		ps, err := e.newProc(run, st.Name)
		if err != nil {
			return nil, err
		}
		out[st.Name] = ps
		for _, x := range append(strSlice(c["command"]), strSlice(c["args"])...) {
			ps.command = append(ps.command, sub(x))
		}
		if len(ps.command) == 0 {
			return nil, fmt.Errorf("step %s: executor %q has no command", st.Name, label)
		}
		env := e.baseEnv()
		for _, ev := range sliceOf(c["env"]) {
			em := mapOf(ev)
			env = append(env, str(em["name"])+"="+sub(str(em["value"])))
		}
		for _, sa := range sliceOf(mapOf(platExecs[label])["secretAsEnv"]) {
			sam := mapOf(sa)
			for _, kv := range sliceOf(sam["keyToEnv"]) {
				kvm := mapOf(kv)
				v, err := e.secret(str(sam["secretName"]), str(kvm["secretKey"]))
				if err != nil && ps.err == nil {
					ps.err = err
				}
				env = append(env, str(kvm["envVar"])+"="+v)
			}
		}
		ps.env = env
	}
	return out, nil
}

// irValue formats a parameter value the way the KFP launcher substitutes it.
func irValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// ---- helpers ----

func (e *Emulator) newProc(run *kfptest.FakeRun, step string) (*procSpec, error) {
	base := e.WorkDir
	if base == "" {
		base = os.TempDir()
	}
	tmp, err := os.MkdirTemp(base, "argoemu-"+step+"-")
	if err != nil {
		return nil, fmt.Errorf("argoemu: %w", err)
	}
	return &procSpec{tmp: tmp}, nil
}

// secret resolves a secret key the way the kubelet would, failing like CreateContainerConfigError.
func (e *Emulator) secret(name, key string) (string, error) {
	s, ok := e.Secrets[name]
	if !ok {
		return "", fmt.Errorf("CreateContainerConfigError: secret %q not found", name)
	}
	v, ok := s[key]
	if !ok {
		return "", fmt.Errorf("CreateContainerConfigError: couldn't find key %s in Secret %s", key, name)
	}
	return v, nil
}

func (e *Emulator) baseEnv() []string {
	if e.Env != nil {
		return append([]string(nil), e.Env...)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "KFBRIDGE_") {
			continue
		}
		env = append(env, kv)
	}
	sort.Strings(env)
	return env
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func sliceOf(v any) []any {
	s, _ := v.([]any)
	return s
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func strSlice(v any) []string {
	var out []string
	for _, x := range sliceOf(v) {
		out = append(out, str(x))
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
