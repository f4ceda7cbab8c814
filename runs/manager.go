package runs

import (
	"context"
	"crypto/subtle"
	"encoding/json"
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
}

// Submission is a validated pipeline ready to run.
type Submission struct {
	Pipeline *pipeline.Pipeline
	// Root is the directory node files are resolved against (the workspace, or an uploaded bundle).
	Root string
	// Cleanup, if set, is called once the run no longer needs Root (uploaded bundles).
	Cleanup func()
}

// Config configures a Manager.
type Config struct {
	// DataDir holds run records (runs/<id>/run.json) and step working directories.
	DataDir string
	Store   storage.Store
	// StoreConfig is passed to steps so they open the same store.
	StoreConfig storage.Config
	// Prefix is the object prefix (cos_object_prefix) under which runs and archives live.
	Prefix  string
	Runtime Runtime
	Logs    *logstream.Store
	Logger  *slog.Logger
}

// Manager tracks runs and drives them through packaging and a runtime.
type Manager struct {
	cfg Config

	mu      sync.Mutex
	runs    map[string]*Run
	tokens  map[string]string // run id -> push token
	cancels map[string]context.CancelFunc
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
	m := &Manager{cfg: cfg, runs: map[string]*Run{}, tokens: map[string]string{}, cancels: map[string]context.CancelFunc{}, now: time.Now}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "runs"), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "runs"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, "runs", e.Name(), "run.json"))
		if err != nil {
			continue
		}
		var r Run
		if json.Unmarshal(b, &r) != nil || r.ID == "" {
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

// Submit registers a run and starts it in the background; it returns as soon as the run exists.
func (m *Manager) Submit(ctx context.Context, sub Submission) (*Run, error) {
	p := sub.Pipeline
	order, err := pipeline.TopoOrder(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := m.now().UTC()
	r := &Run{ID: newID(now), Name: p.Name, Source: p.Source, Runtime: m.cfg.Runtime.Name(), Status: StatusPending, CreatedAt: now}
	r.RunDir = storage.RunDir(m.cfg.Prefix, r.ID)
	r.ObjectStoreURL = m.cfg.Store.Location() + "/" + r.RunDir
	for _, n := range order {
		r.Steps = append(r.Steps, &Step{ID: n.ID, Label: n.Label, File: n.Filename, Parents: n.Parents, Status: StatusPending})
	}
	job := &Job{RunID: r.ID, Name: p.Name, Pipeline: p, RunDir: r.RunDir, Store: m.cfg.StoreConfig, PushToken: randHex(24)}

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
	archives, err := Package(ctx, m.cfg.Store, m.cfg.Prefix, root, job.Pipeline, PackageOptions{
		Progress: func(p Progress) {
			m.mu.Lock()
			if r := m.runs[runID]; r != nil {
				if r.Packaging == nil {
					r.Packaging = map[string]Progress{}
				}
				r.Packaging[p.NodeID] = p
			}
			m.mu.Unlock()
			m.cfg.Logs.Publish(runID, logstream.Event{Type: logstream.EventProgress, Step: p.NodeID, Status: p.Phase, Data: p})
		},
	})
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
	switch {
	case ctx.Err() != nil:
		m.finish(runID, StatusCancelled, "cancelled")
	case err != nil:
		m.finish(runID, StatusFailed, err.Error())
	default:
		m.finish(runID, "", "")
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

// Cancel stops an active run.
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	r := m.runs[id]
	cancel := m.cancels[id]
	m.mu.Unlock()
	if r == nil {
		return fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	if cancel == nil {
		return fmt.Errorf("run %q has already ended (%s): %w", id, r.Status, ErrConflict)
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
	for _, c := range m.cancels {
		c()
	}
	m.mu.Unlock()
	m.wg.Wait()
}
