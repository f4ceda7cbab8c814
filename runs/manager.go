package runs

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage"
)

// Runtime executes a packaged pipeline. Execute blocks until the run has ended or ctx is
// cancelled, reporting every step's progress through rep.
type Runtime interface {
	Name() string
	Execute(ctx context.Context, job *Job, rep Reporter) error
}

// Starter is implemented by runtimes that hand a run to another system (Kubeflow Pipelines). The
// manager calls Start synchronously within the submission, so that packaging, compilation and
// submission errors reach the caller and the submit answer carries the remote run's identity;
// Execute then follows the started run in the background until it ends, and returns when ctx is
// cancelled only once the remote run has been told to stop (or after a bounded wait).
type Starter interface {
	Start(ctx context.Context, job *Job, root string, progress func(Progress)) (*Started, error)
}

// Terminator is implemented by runtimes whose runs must be stopped by a request to another system.
// Manager.Cancel calls Terminate before cancelling the run's context, so a failure to stop the
// remote run is reported to the caller instead of being lost.
type Terminator interface {
	Terminate(ctx context.Context, job *Job) error
}

// Attacher is implemented by Starter runtimes that can follow a run they started before kfbridge
// restarted: Attach fills in what Start returned besides the identity kept in the run record
// (job.Remote.Archive).
type Attacher interface {
	Attach(ctx context.Context, job *Job) error
}

// Started describes a run a Starter has created elsewhere.
type Started struct {
	// KFPRunID is the run's ID in Kubeflow Pipelines; RunURL its page in the KFP UI.
	KFPRunID string
	RunURL   string
	// RunDir is the run's directory in the runtime's object store; ObjectStoreURL points at it.
	RunDir         string
	ObjectStoreURL string
	// Archive reads the step logs the runners write to the runtime's object store (segments while a
	// step runs, the archive once it ended), so the live log can tail steps that cannot push.
	Archive logstream.Archive
	// Tasks maps the remote DAG task names to node IDs.
	Tasks map[string]string
}

// RuntimeResolver returns the runtime of a named runtime configuration other than "local".
type RuntimeResolver interface {
	Resolve(ctx context.Context, name string) (Runtime, error)
}

// Error kinds of runtimes that talk to other systems.
var (
	// ErrUpstream wraps failures of a system kfbridge depends on (KFP, a runtime's object store);
	// handlers answer 502 with the message, which names that system.
	ErrUpstream = errors.New("upstream failure")
	// ErrRemoteCancelled is returned by Execute when the remote run was stopped by someone else
	// (e.g. terminated in the KFP UI): the run ends cancelled, not failed.
	ErrRemoteCancelled = errors.New("run was cancelled outside kfbridge")
)

// Reporter receives step status changes from a runtime.
type Reporter interface {
	// StepStatus records a step's new status; exitCode is set when the step has ended.
	StepStatus(stepID, status string, exitCode *int, message string)
}

// Job is everything a runtime needs to run one submission.
type Job struct {
	RunID    string
	Name     string
	Pipeline *pipeline.Pipeline
	// Archives maps node ID to its uploaded dependency archive.
	Archives map[string]Archive
	// RunDir is the run's directory in the store (storage.RunDir).
	RunDir string
	// Store is how steps reach the object store (endpoint, bucket, region; credentials from env).
	Store storage.Config
	// PushToken authenticates the steps' log pushes for this run only.
	PushToken string
	// Remote is set once a Starter has created the run elsewhere.
	Remote *Started
}

// Submission is a validated pipeline ready to run.
type Submission struct {
	Pipeline *pipeline.Pipeline
	// Root is the directory node files are resolved against (the workspace, or an uploaded bundle).
	Root string
	// Cleanup, if set, is called once the run no longer needs Root (uploaded bundles).
	Cleanup func()
	// Runtime names the runtime configuration to run on; "" means LocalRuntimeName.
	Runtime string
}

// Config configures a Manager.
type Config struct {
	// DataDir holds run records (runs/<id>/run.json) and step working directories.
	DataDir string
	Store   storage.Store
	// StoreConfig is passed to steps so they open the same store.
	StoreConfig storage.Config
	// Prefix is the object prefix (cos_object_prefix) under which runs and archives live.
	Prefix string
	// Runtime is the local runtime, used for submissions naming no runtime or "local".
	Runtime Runtime
	// Runtimes resolves every other runtime name (KFP runtime configurations); nil means only the
	// local runtime exists.
	Runtimes RuntimeResolver
	// Archives, if set, learns where the step logs of remote runs live; it should be the Archive the
	// log store (Logs) tails.
	Archives *ArchiveRouter
	// StartTimeout bounds a Starter's Start (packaging, compiling, submitting); default 10 min.
	StartTimeout time.Duration
	Logs         *logstream.Store
	Logger       *slog.Logger
}

// Manager tracks runs and drives them through packaging and a runtime.
type Manager struct {
	cfg Config

	mu      sync.Mutex
	runs    map[string]*Run
	tokens  map[string]string // run id -> push token
	cancels map[string]context.CancelFunc
	remote  map[string]remoteRun // active runs of Starter runtimes
	idem    *IdempotencyStore
	wg      sync.WaitGroup
	now     func() time.Time
}

// NewManager returns a manager and loads the runs recorded in the data directory. Runs that were
// still active when the previous process stopped are marked failed: their step processes died
// with it.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Minute
	}
	m := &Manager{cfg: cfg, runs: map[string]*Run{}, tokens: map[string]string{}, cancels: map[string]context.CancelFunc{},
		remote: map[string]remoteRun{}, now: time.Now}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "runs"), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	idem, err := NewIdempotencyStore(filepath.Join(cfg.DataDir, "idempotency"), 0)
	if err != nil {
		return nil, err
	}
	m.idem = idem
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "runs"))
	var follow []*Run
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, "runs", e.Name(), "run.json"))
		if err != nil {
			continue
		}
		var r Run
		if json.Unmarshal(b, &r) != nil || r.ID == "" {
			continue
		}
		if !Terminal(r.Status) && r.KFPRunID != "" && cfg.Runtimes != nil {
			// The run goes on in KFP: follow it again (once every run is loaded).
			m.runs[r.ID] = &r
			m.replay(&r)
			follow = append(follow, &r)
			continue
		}
		if !Terminal(r.Status) {
			r.Status, r.Error = StatusFailed, "kfbridge stopped while the run was active"
			now := m.now().UTC()
			r.FinishedAt = &now
			for _, s := range r.Steps {
				if !Terminal(s.Status) {
					s.Status = StatusFailed
					s.Message = r.Error
				}
			}
			m.save(&r)
		}
		m.runs[r.ID] = &r
		m.replay(&r)
	}
	for _, r := range follow {
		m.reattach(r)
	}
	return m, nil
}

// replay publishes a loaded run's final state to the log store so viewers of an old run see its
// statuses.
func (m *Manager) replay(r *Run) {
	for _, s := range r.Steps {
		m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventStep, Step: s.ID, Status: s.Status, ExitCode: s.ExitCode, Message: s.Message})
	}
	m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventRun, Status: r.Status, Message: r.Error})
}

// remoteRun is an active run of a Starter runtime.
type remoteRun struct {
	rt   Terminator // nil if the runtime cannot stop its runs
	job  *Job
	stop context.CancelCauseFunc
}

// errShutdown cancels the watchers of remote runs when kfbridge stops: the runs go on remotely,
// so they are left as they are instead of being ended as cancelled.
var errShutdown = errors.New("kfbridge is shutting down")

// runtime returns the runtime a submission names.
func (m *Manager) runtime(ctx context.Context, name string) (Runtime, error) {
	if name == "" || name == LocalRuntimeName {
		return m.cfg.Runtime, nil
	}
	if m.cfg.Runtimes == nil {
		return nil, fmt.Errorf("%w: runtime %q: only the local runtime is available", ErrInvalid, name)
	}
	rt, err := m.cfg.Runtimes.Resolve(ctx, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: runtime %q does not exist (see GET /api/v1/runtimes)", ErrInvalid, name)
		}
		return nil, err
	}
	return rt, nil
}

// Submit registers a run and starts it in the background; it returns as soon as the run exists.
// For a runtime that runs elsewhere (a Starter: Kubeflow Pipelines) it first packages, compiles and
// submits, and returns once the remote run exists, with its ID and links.
func (m *Manager) Submit(ctx context.Context, sub Submission) (*Run, error) {
	p := sub.Pipeline
	order, err := pipeline.TopoOrder(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	rt, err := m.runtime(ctx, sub.Runtime)
	if err != nil {
		return nil, err
	}
	runtimeName := rt.Name()
	if sub.Runtime != "" {
		runtimeName = sub.Runtime
	}
	now := m.now().UTC()
	r := &Run{ID: newID(now), Name: p.Name, Source: p.Source, Runtime: runtimeName, Status: StatusPending, CreatedAt: now}
	r.RunDir = storage.RunDir(m.cfg.Prefix, r.ID)
	if m.cfg.Store != nil { // a manager of remote runtimes only may have no store of its own
		r.ObjectStoreURL = m.cfg.Store.Location() + "/" + r.RunDir
	}
	for _, n := range order {
		r.Steps = append(r.Steps, &Step{ID: n.ID, Label: n.Label, File: n.Filename, Parents: n.Parents, Status: StatusPending})
	}
	job := &Job{RunID: r.ID, Name: p.Name, Pipeline: p, RunDir: r.RunDir, Store: m.cfg.StoreConfig, PushToken: randHex(24)}
	if st, ok := rt.(Starter); ok {
		return m.submitRemote(ctx, sub, rt, st, r, job)
	}

	// The run outlives the request that created it; only Cancel or Close stop it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.runs[r.ID] = r
	m.tokens[r.ID] = job.PushToken
	m.cancels[r.ID] = cancel
	m.save(r)
	snapshot := r.clone()
	m.mu.Unlock()
	m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventRun, Status: StatusPending})
	m.cfg.Logger.Info("run submitted", "run_id", r.ID, "pipeline", p.Name, "steps", len(r.Steps), "runtime", r.Runtime)

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		if sub.Cleanup != nil {
			defer sub.Cleanup()
		}
		m.execute(runCtx, r.ID, job, sub.Root)
	}()
	return snapshot, nil
}

func (m *Manager) execute(ctx context.Context, runID string, job *Job, root string) {
	archives, err := Package(ctx, m.cfg.Store, m.cfg.Prefix, root, job.Pipeline, PackageOptions{Progress: m.progress(runID)})
	if err != nil {
		if ctx.Err() != nil {
			m.finish(runID, StatusCancelled, "cancelled while packaging")
			return
		}
		m.finish(runID, StatusFailed, "packaging failed: "+err.Error())
		return
	}
	job.Archives = archives
	m.setRun(runID, func(r *Run) {
		r.Status = StatusRunning
		now := m.now().UTC()
		r.StartedAt = &now
	})
	m.cfg.Logs.Publish(runID, logstream.Event{Type: logstream.EventRun, Status: StatusRunning})
	err = m.cfg.Runtime.Execute(ctx, job, &reporter{m: m, runID: runID})
	m.conclude(ctx, runID, err)
}

// conclude ends a run after its runtime's Execute returned err.
func (m *Manager) conclude(ctx context.Context, runID string, err error) {
	switch {
	case ctx.Err() != nil:
		m.finish(runID, StatusCancelled, "cancelled")
	case errors.Is(err, ErrRemoteCancelled):
		m.finish(runID, StatusCancelled, err.Error())
	case err != nil:
		m.finish(runID, StatusFailed, err.Error())
	default:
		m.finish(runID, "", "")
	}
}

// submitRemote runs a Starter's Start within the submission and, once the remote run exists,
// follows it in the background. A submission whose Start fails leaves no run behind: nothing was
// created remotely, and the caller gets the error.
func (m *Manager) submitRemote(ctx context.Context, sub Submission, rt Runtime, st Starter, r *Run, job *Job) (*Run, error) {
	defer func() {
		if sub.Cleanup != nil {
			sub.Cleanup() // the files are packaged (or will never be)
		}
	}()
	m.mu.Lock()
	m.runs[r.ID] = r
	m.mu.Unlock()
	m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventRun, Status: StatusPending})
	m.cfg.Logger.Info("run submitted", "run_id", r.ID, "pipeline", r.Name, "steps", len(r.Steps), "runtime", r.Runtime)
	// A client that disconnects must not abort a half-done submission: a retry (same
	// Idempotency-Key) waits for this one and gets its answer.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StartTimeout)
	started, err := st.Start(sctx, job, sub.Root, m.progress(r.ID))
	cancel()
	if err != nil {
		m.mu.Lock()
		delete(m.runs, r.ID)
		m.mu.Unlock()
		m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventRun, Status: StatusFailed, Message: err.Error()})
		m.cfg.Logger.Warn("run not started", "run_id", r.ID, "runtime", r.Runtime, "err", err)
		return nil, err
	}
	job.Remote = started
	if m.cfg.Archives != nil && started.Archive != nil {
		m.cfg.Archives.Set(r.ID, started.Archive)
	}
	runCtx, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	runCancel := func() { stop(nil) }
	m.mu.Lock()
	now := m.now().UTC()
	r.Status, r.StartedAt = StatusRunning, &now
	r.KFPRunID, r.RunURL = started.KFPRunID, started.RunURL
	if started.RunDir != "" {
		r.RunDir, job.RunDir = started.RunDir, started.RunDir
	}
	if started.ObjectStoreURL != "" {
		r.ObjectStoreURL = started.ObjectStoreURL
	}
	m.cancels[r.ID] = runCancel
	rr := remoteRun{job: job, stop: stop}
	rr.rt, _ = rt.(Terminator)
	m.remote[r.ID] = rr
	for _, s := range r.Steps {
		for task, id := range started.Tasks {
			if id == s.ID {
				s.KFPTask = task
			}
		}
	}
	m.save(r)
	snapshot := r.clone()
	m.mu.Unlock()
	// Make every step's log live in the log store now. A viewer reading a step the store does not
	// hold makes it look in the archive, and a step that starts during that look-up would lose its
	// tail (logstream drops the placeholder when the archive has nothing); a live step is never
	// looked up.
	for _, s := range r.Steps {
		m.cfg.Logs.Append(r.ID, s.ID, nil)
	}
	m.cfg.Logs.Publish(r.ID, logstream.Event{Type: logstream.EventRun, Status: StatusRunning})
	m.cfg.Logger.Info("run started", "run_id", r.ID, "runtime", r.Runtime, "kfp_run_id", r.KFPRunID, "run_url", r.RunURL)

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer runCancel()
		m.followRemote(runCtx, r.ID, rt, job)
	}()
	return snapshot, nil
}

// followRemote runs a remote run's Execute and ends the run with its outcome, unless kfbridge is
// shutting down: the run goes on remotely and its record stays as last seen, to be followed again
// after the restart.
func (m *Manager) followRemote(ctx context.Context, runID string, rt Runtime, job *Job) {
	err := rt.Execute(ctx, job, &reporter{m: m, runID: runID})
	if errors.Is(context.Cause(ctx), errShutdown) {
		return
	}
	m.conclude(ctx, runID, err)
}

// attachTimeout bounds re-attaching one remote run after a restart.
const attachTimeout = time.Minute

// reattach follows a remote run that was active when kfbridge last stopped. The runtime is
// resolved and attached in the background, so a slow or unreachable KFP does not delay startup;
// if that fails the run is failed with the reason. The caller holds no lock; r is read before
// the background work starts.
func (m *Manager) reattach(r *Run) {
	tasks := map[string]string{}
	for _, s := range r.Steps {
		if s.KFPTask != "" {
			tasks[s.KFPTask] = s.ID
		}
	}
	job := &Job{RunID: r.ID, Name: r.Name, RunDir: r.RunDir, Remote: &Started{KFPRunID: r.KFPRunID, RunURL: r.RunURL,
		RunDir: r.RunDir, ObjectStoreURL: r.ObjectStoreURL, Tasks: tasks}}
	runCtx, stop := context.WithCancelCause(context.Background())
	m.mu.Lock()
	m.cancels[r.ID] = func() { stop(nil) }
	m.remote[r.ID] = remoteRun{job: job, stop: stop}
	m.mu.Unlock()
	runtimeName := r.Runtime
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer stop(nil)
		fail := func(err error) {
			m.cfg.Logger.Warn("cannot follow run after restart", "run_id", r.ID, "kfp_run_id", job.Remote.KFPRunID, "err", err)
			m.finish(r.ID, StatusFailed, "kfbridge restarted and cannot follow the KFP run "+job.Remote.KFPRunID+": "+err.Error())
		}
		actx, cancel := context.WithTimeout(runCtx, attachTimeout)
		rt, err := m.cfg.Runtimes.Resolve(actx, runtimeName)
		if err == nil {
			if at, ok := rt.(Attacher); ok {
				err = at.Attach(actx, job)
			} else {
				err = fmt.Errorf("runtime %q cannot follow runs it did not start", runtimeName)
			}
		}
		cancel()
		if err != nil {
			if !errors.Is(context.Cause(runCtx), errShutdown) {
				fail(err)
			}
			return
		}
		if m.cfg.Archives != nil && job.Remote.Archive != nil {
			m.cfg.Archives.Set(r.ID, job.Remote.Archive)
		}
		m.mu.Lock()
		rr := m.remote[r.ID]
		rr.rt, _ = rt.(Terminator)
		m.remote[r.ID] = rr
		m.mu.Unlock()
		m.cfg.Logger.Info("following run again after restart", "run_id", r.ID, "kfp_run_id", job.Remote.KFPRunID)
		m.followRemote(runCtx, r.ID, rt, job)
	}()
}

// progress records and publishes packaging progress of a run.
func (m *Manager) progress(runID string) func(Progress) {
	return func(p Progress) {
		m.mu.Lock()
		if r := m.runs[runID]; r != nil {
			if r.Packaging == nil {
				r.Packaging = map[string]Progress{}
			}
			r.Packaging[p.NodeID] = p
		}
		m.mu.Unlock()
		m.cfg.Logs.Publish(runID, logstream.Event{Type: logstream.EventProgress, Step: p.NodeID, Status: p.Phase, Data: p})
	}
}

// finish ends a run. With an empty status the run succeeded if every step did.
func (m *Manager) finish(runID, status, msg string) {
	var final string
	m.setRun(runID, func(r *Run) {
		now := m.now().UTC()
		for _, s := range r.Steps {
			if !Terminal(s.Status) {
				s.Status = StatusSkipped
				if status == StatusCancelled {
					s.Status = StatusCancelled
				}
			}
		}
		if status == "" {
			status = StatusSucceeded
			for _, s := range r.Steps {
				if s.Status != StatusSucceeded {
					status = StatusFailed
					if msg == "" {
						msg = fmt.Sprintf("step %q %s", s.Label, s.Status)
					}
					break
				}
			}
		}
		r.Status, r.Error, r.FinishedAt = status, msg, &now
		final = status
	})
	// Steps never started were marked above; tell viewers.
	if r, err := m.Get(runID); err == nil {
		for _, s := range r.Steps {
			if s.Status == StatusSkipped || (s.Status == StatusCancelled && s.StartedAt == nil) {
				m.cfg.Logs.Publish(runID, logstream.Event{Type: logstream.EventStep, Step: s.ID, Status: s.Status})
			}
		}
	}
	m.cfg.Logs.Publish(runID, logstream.Event{Type: logstream.EventRun, Status: final, Message: msg})
	m.cfg.Logger.Info("run finished", "run_id", runID, "status", final, "error", msg)
	m.mu.Lock()
	delete(m.cancels, runID)
	delete(m.tokens, runID)
	delete(m.remote, runID)
	m.mu.Unlock()
}

type reporter struct {
	m     *Manager
	runID string
}

func (rp *reporter) StepStatus(stepID, status string, exitCode *int, message string) {
	m := rp.m
	m.setRun(rp.runID, func(r *Run) {
		s := r.step(stepID)
		if s == nil {
			return
		}
		now := m.now().UTC()
		if status == StatusRunning && s.StartedAt == nil {
			s.StartedAt = &now
		}
		if Terminal(status) {
			s.FinishedAt = &now
		}
		s.Status, s.ExitCode, s.Message = status, exitCode, message
	})
	m.cfg.Logs.Publish(rp.runID, logstream.Event{Type: logstream.EventStep, Step: stepID, Status: status, ExitCode: exitCode, Message: message})
}

// setRun changes a run under the lock and records it on disk.
func (m *Manager) setRun(id string, f func(*Run)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.runs[id]
	if r == nil {
		return
	}
	f(r)
	m.save(r)
}

// save writes the run record atomically. The caller holds m.mu (or owns r exclusively).
func (m *Manager) save(r *Run) {
	dir := filepath.Join(m.cfg.DataDir, "runs", r.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		m.cfg.Logger.Error("save run", "run_id", r.ID, "err", err)
		return
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	tmp := filepath.Join(dir, "run.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "run.json"))
		if err != nil {
			m.cfg.Logger.Error("save run", "run_id", r.ID, "err", err)
		}
	}
}

// Idempotency is the store of submission answers kept for Idempotency-Key retries
// (<data dir>/idempotency).
func (m *Manager) Idempotency() *IdempotencyStore { return m.idem }

// Get returns a copy of a run.
func (m *Manager) Get(id string) (*Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.runs[id]
	if r == nil {
		return nil, fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	return r.clone(), nil
}

// List returns copies of all runs, newest first.
func (m *Manager) List() []*Run {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Run, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, r.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// terminateTimeout bounds Cancel's request to stop a remote run.
const terminateTimeout = 30 * time.Second

// Cancel stops an active run. A remote run (KFP) is terminated there first; if that fails the
// run keeps going and the error (ErrUpstream) says why.
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	r := m.runs[id]
	cancel := m.cancels[id]
	rr, isRemote := m.remote[id]
	m.mu.Unlock()
	if r == nil {
		return fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	if cancel == nil {
		if r.Status == StatusPending {
			// A remote run is registered while it is being packaged and submitted; until KFP has
			// it there is nothing to stop, and the submit itself reports the outcome.
			return fmt.Errorf("run %q is still being submitted; cancel it once it has started: %w", id, ErrConflict)
		}
		return fmt.Errorf("run %q has already ended (%s): %w", id, r.Status, ErrConflict)
	}
	if isRemote && rr.rt != nil {
		ctx, stop := context.WithTimeout(context.Background(), terminateTimeout)
		err := rr.rt.Terminate(ctx, rr.job)
		stop()
		if err != nil {
			return fmt.Errorf("cancel run %q: %w", id, err)
		}
	}
	cancel()
	return nil
}

// CheckPushToken reports whether token is the push token of an active run and stepID one of its
// steps.
func (m *Manager) CheckPushToken(runID, stepID, token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	want, ok := m.tokens[runID]
	if !ok || token == "" || subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return false
	}
	return m.runs[runID].step(stepID) != nil
}

// Close cancels every active run and waits for them to wind down (steps receive SIGTERM).
func (m *Manager) Close() {
	m.mu.Lock()
	for _, rr := range m.remote {
		rr.stop(errShutdown)
	}
	for _, c := range m.cancels {
		c()
	}
	m.mu.Unlock()
	m.wg.Wait()
}
