package kfptest

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
)

// Executor runs a fake run's steps. The fake server calls Start in its own goroutine once the
// run is created; ctx is cancelled when the run is terminated or the server closes. Start reports
// progress through run.SetStep/SetPhase and returns when the run is over. If it returns without
// a terminal phase, the server derives one from the steps (any failed step: Failed; terminated:
// Failed with Argo's deadline message; else Succeeded).
type Executor interface {
	Start(ctx context.Context, run *FakeRun)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, run *FakeRun)

// Start calls f.
func (f ExecutorFunc) Start(ctx context.Context, run *FakeRun) { f(ctx, run) }

// Argo phases used by the fake (node and workflow).
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	PhaseError     = "Error"
	PhaseSkipped   = "Skipped"
	PhaseOmitted   = "Omitted"
)

// TerminatedMessage is what Argo writes when KFP's terminate sets activeDeadlineSeconds to 0.
const TerminatedMessage = "Max duration limit exceeded"

// FakeStep is one step of a run's DAG, parsed from the Argo workflow (v1) or the IR spec (v2).
type FakeStep struct {
	// Name is the DAG task name (Argo dag.tasks[].name / IR root.dag.tasks key).
	Name string
	// Template is the Argo template or IR component the task uses.
	Template     string
	Dependencies []string
	Image        string
	Command      []string
	Args         []string
	Env          map[string]string
	// Spec is the raw Argo template or IR executor container, for executors that need more.
	Spec map[string]any
}

// StepUpdate reports a step's progress; empty fields keep their value.
type StepUpdate struct {
	// Phase is an Argo node phase (PhaseRunning, PhaseSucceeded, PhaseFailed, ...).
	Phase    string
	ExitCode *int
	Message  string
}

// FakeRun is a run held by the fake server.
type FakeRun struct {
	ID          string
	Name        string
	Description string
	// APIVersion is the API the run was created through.
	APIVersion   string
	Namespace    string
	ExperimentID string
	PipelineID   string
	VersionID    string
	// WorkflowName is metadata.name of the (real or synthesized) Argo workflow.
	WorkflowName string
	// Workflow is the Argo workflow (v1 sources); nil for IR runs.
	Workflow map[string]any
	// PipelineSpec is the IR pipeline spec (v2 sources); nil for Argo runs.
	PipelineSpec map[string]any
	// PlatformSpec is the IR package's Kubernetes platform spec (secretAsEnv, …) when it had one.
	PlatformSpec map[string]any
	// Parameters are the run's parameter values as sent.
	Parameters map[string]any
	// Steps in topological order.
	Steps     []FakeStep
	CreatedAt time.Time

	mu         sync.Mutex
	phase      string
	message    string
	startedAt  time.Time
	finishedAt time.Time
	terminated bool
	nodes      map[string]*nodeState // by step name
	cancel     context.CancelFunc
	done       chan struct{}
}

type nodeState struct {
	node       kfp.ArgoNode
	terminated bool
}

// Phase returns the run's Argo phase ("" before the executor starts).
func (r *FakeRun) Phase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// Terminated reports whether terminate was requested.
func (r *FakeRun) Terminated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminated
}

// Done is closed when the executor has returned and the run is final.
func (r *FakeRun) Done() <-chan struct{} { return r.done }

// SetPhase sets the workflow phase and message.
func (r *FakeRun) SetPhase(phase, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setPhaseLocked(phase, message)
}

func (r *FakeRun) setPhaseLocked(phase, message string) {
	now := time.Now().UTC()
	if r.startedAt.IsZero() && phase != "" && phase != PhasePending {
		r.startedAt = now
	}
	r.phase = phase
	if message != "" {
		r.message = message
	}
	if isFinalPhase(phase) && r.finishedAt.IsZero() {
		r.finishedAt = now
	}
}

func isFinalPhase(p string) bool {
	switch p {
	case PhaseSucceeded, PhaseFailed, PhaseError, PhaseSkipped, PhaseOmitted:
		return true
	}
	return false
}

// SetStep updates the node of the named step (creating it on first report).
func (r *FakeRun) SetStep(name string, u StepUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var step *FakeStep
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			step = &r.Steps[i]
		}
	}
	ns := r.nodes[name]
	if ns == nil {
		nodeName := r.WorkflowName + "." + name
		tmpl := ""
		if step != nil {
			tmpl = step.Template
		}
		ns = &nodeState{node: kfp.ArgoNode{
			ID: NodeID(r.WorkflowName, nodeName), Name: nodeName, DisplayName: name, Type: "Pod",
			TemplateName: tmpl, BoundaryID: r.WorkflowName, Phase: PhasePending,
		}}
		r.nodes[name] = ns
	}
	now := time.Now().UTC()
	if u.Phase != "" {
		ns.node.Phase = u.Phase
		if u.Phase != PhasePending && ns.node.StartedAt.IsZero() {
			ns.node.StartedAt = kfp.ArgoTime{Time: now}
		}
		if isFinalPhase(u.Phase) && ns.node.FinishedAt.IsZero() {
			ns.node.FinishedAt = kfp.ArgoTime{Time: now}
		}
	}
	if u.ExitCode != nil {
		s := fmt.Sprint(*u.ExitCode)
		ns.node.Outputs = &kfp.NodeOutputs{ExitCode: &s}
	}
	if u.Message != "" {
		ns.node.Message = u.Message
	}
	if r.phase == "" || r.phase == PhasePending {
		r.setPhaseLocked(PhaseRunning, "")
	}
}

// StepNodeID is the Argo node ID (and v1-format pod name) of the named step.
func (r *FakeRun) StepNodeID(name string) string {
	return NodeID(r.WorkflowName, r.WorkflowName+"."+name)
}

// StepPhase returns the Argo phase of a step's node ("" if not reported yet).
func (r *FakeRun) StepPhase(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ns := r.nodes[name]; ns != nil {
		return ns.node.Phase
	}
	return ""
}

// NodeID is Argo's node ID: "<workflow>-<fnv32a(node name)>".
func NodeID(workflowName, nodeName string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeName))
	return fmt.Sprintf("%s-%d", workflowName, h.Sum32())
}

// finish is called after the executor returned.
func (r *FakeRun) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.terminated {
		for _, ns := range r.nodes {
			if !isFinalPhase(ns.node.Phase) {
				ns.node.Phase = PhaseFailed
				ns.node.Message = "Pod was active on the node longer than the specified deadline"
				ns.node.FinishedAt = kfp.ArgoTime{Time: time.Now().UTC()}
				ns.terminated = true
			}
		}
		if !isFinalPhase(r.phase) || r.phase == PhaseSucceeded {
			r.phase = ""
			r.setPhaseLocked(PhaseFailed, TerminatedMessage)
			r.message = TerminatedMessage
		}
		return
	}
	if isFinalPhase(r.phase) {
		return
	}
	phase := PhaseSucceeded
	msg := ""
	for _, ns := range r.nodes {
		if ns.node.Phase == PhaseFailed || ns.node.Phase == PhaseError {
			phase = PhaseFailed
			msg = fmt.Sprintf("child '%s' failed", ns.node.ID)
		}
	}
	r.setPhaseLocked(phase, msg)
}

// snapshot returns a consistent copy of the run's state.
func (r *FakeRun) snapshot() runSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := runSnapshot{phase: r.phase, message: r.message, startedAt: r.startedAt, finishedAt: r.finishedAt, terminated: r.terminated}
	for name, ns := range r.nodes {
		s.nodes = append(s.nodes, nodeSnap{step: name, node: ns.node, terminated: ns.terminated})
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].node.ID < s.nodes[j].node.ID })
	return s
}

type runSnapshot struct {
	phase, message        string
	startedAt, finishedAt time.Time
	terminated            bool
	nodes                 []nodeSnap
}

type nodeSnap struct {
	step       string
	node       kfp.ArgoNode
	terminated bool
}

// ---- step parsing ----

// stepsFromWorkflow reads the entrypoint's DAG tasks (or the entrypoint container itself).
func stepsFromWorkflow(wf map[string]any) ([]FakeStep, error) {
	spec := mapOf(wf["spec"])
	templates := map[string]map[string]any{}
	for _, t := range sliceOf(spec["templates"]) {
		tm := mapOf(t)
		templates[str(tm["name"])] = tm
	}
	entry := str(spec["entrypoint"])
	root := templates[entry]
	if root == nil {
		return nil, fmt.Errorf("entrypoint %q is not a template", entry)
	}
	var steps []FakeStep
	if dag := mapOf(root["dag"]); dag != nil {
		for _, t := range sliceOf(dag["tasks"]) {
			tm := mapOf(t)
			st := FakeStep{Name: str(tm["name"]), Template: str(tm["template"])}
			for _, d := range sliceOf(tm["dependencies"]) {
				st.Dependencies = append(st.Dependencies, str(d))
			}
			if dep := str(tm["depends"]); dep != "" {
				st.Dependencies = append(st.Dependencies, dependsNames(dep)...)
			}
			fillContainer(&st, templates[st.Template], mapOf(templates[st.Template]["container"]))
			steps = append(steps, st)
		}
	} else if c := mapOf(root["container"]); c != nil {
		st := FakeStep{Name: entry, Template: entry}
		fillContainer(&st, root, c)
		steps = append(steps, st)
	}
	return topoSort(steps)
}

// dependsNames extracts task names from an Argo "depends" expression ("a && (b.Succeeded || c)").
func dependsNames(expr string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(expr, func(r rune) bool { return strings.ContainsRune(" ()&|!", r) }) {
		name, _, _ := strings.Cut(f, ".")
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// stepsFromIR reads root.dag.tasks and resolves each task's executor container.
func stepsFromIR(ir map[string]any) ([]FakeStep, error) {
	root := mapOf(ir["root"])
	tasks := mapOf(mapOf(root["dag"])["tasks"])
	comps := mapOf(ir["components"])
	execs := mapOf(mapOf(ir["deploymentSpec"])["executors"])
	var steps []FakeStep
	for name, t := range tasks {
		tm := mapOf(t)
		comp := str(mapOf(tm["componentRef"])["name"])
		st := FakeStep{Name: name, Template: comp}
		for _, d := range sliceOf(tm["dependentTasks"]) {
			st.Dependencies = append(st.Dependencies, str(d))
		}
		label := str(mapOf(comps[comp])["executorLabel"])
		exec := mapOf(execs[label])
		fillContainer(&st, exec, mapOf(exec["container"]))
		steps = append(steps, st)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Name < steps[j].Name })
	return topoSort(steps)
}

func fillContainer(st *FakeStep, spec, c map[string]any) {
	st.Spec = spec
	if c == nil {
		return
	}
	st.Image = str(c["image"])
	for _, x := range sliceOf(c["command"]) {
		st.Command = append(st.Command, str(x))
	}
	for _, x := range sliceOf(c["args"]) {
		st.Args = append(st.Args, str(x))
	}
	for _, e := range sliceOf(c["env"]) {
		em := mapOf(e)
		if st.Env == nil {
			st.Env = map[string]string{}
		}
		st.Env[str(em["name"])] = str(em["value"])
	}
}

// topoSort orders steps so that dependencies come first (stable by input order).
func topoSort(steps []FakeStep) ([]FakeStep, error) {
	byName := map[string]int{}
	for i, s := range steps {
		byName[s.Name] = i
	}
	state := make([]int, len(steps)) // 0 new, 1 visiting, 2 done
	var out []FakeStep
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("dependency cycle at task %q", steps[i].Name)
		case 2:
			return nil
		}
		state[i] = 1
		for _, d := range steps[i].Dependencies {
			j, ok := byName[d]
			if !ok {
				return fmt.Errorf("task %q depends on unknown task %q", steps[i].Name, d)
			}
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = 2
		out = append(out, steps[i])
		return nil
	}
	for i := range steps {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return out, nil
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
	}
	return fmt.Sprint(v)
}

// ---- built-in executor ----

// StepScript scripts one step of a ScriptExecutor.
type StepScript struct {
	// ExitCode != 0 fails the step.
	ExitCode int
	// Delay is how long the step "runs".
	Delay time.Duration
	// Message is set on failure.
	Message string
	// Block keeps the step running until the run is terminated.
	Block bool
}

// ScriptExecutor marks steps running, then succeeded or failed as scripted, in dependency order.
// Steps whose dependencies did not succeed are Omitted, as Argo does.
type ScriptExecutor struct {
	// Steps scripts steps by name; unscripted steps succeed after Delay.
	Steps map[string]StepScript
	// Delay is the default step duration.
	Delay time.Duration
}

// Start implements Executor.
func (e ScriptExecutor) Start(ctx context.Context, run *FakeRun) {
	ok := map[string]bool{}
	for _, st := range run.Steps {
		runnable := true
		for _, d := range st.Dependencies {
			if !ok[d] {
				runnable = false
			}
		}
		if !runnable {
			run.SetStep(st.Name, StepUpdate{Phase: PhaseOmitted, Message: "omitted: depends condition not met"})
			continue
		}
		sc, scripted := e.Steps[st.Name]
		if !scripted {
			sc = StepScript{Delay: e.Delay}
		}
		run.SetStep(st.Name, StepUpdate{Phase: PhaseRunning})
		wait := sc.Delay
		if sc.Block {
			wait = time.Hour
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		code := sc.ExitCode
		if code == 0 {
			run.SetStep(st.Name, StepUpdate{Phase: PhaseSucceeded, ExitCode: &code})
			ok[st.Name] = true
			continue
		}
		msg := sc.Message
		if msg == "" {
			msg = fmt.Sprintf("Error (exit code %d)", code)
		}
		run.SetStep(st.Name, StepUpdate{Phase: PhaseFailed, ExitCode: &code, Message: msg})
	}
}
