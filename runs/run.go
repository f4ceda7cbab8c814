// Package runs owns the life of a run: a submission is validated, packaged into the object store and
// handed to a runtime (local processes, or Kubeflow Pipelines); the runtime reports step statuses,
// which become run state and events in the log store. Everything that differs between running
// locally and on KFP lives behind the Runtime interface, so the rest of a run's life is one code
// path.
package runs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Error kinds. Handlers map them to HTTP statuses with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
	ErrConflict = errors.New("conflict")
)

// Run statuses.
const (
	StatusPending   = "pending"   // accepted, packaging and uploading
	StatusRunning   = "running"   // steps are executing
	StatusSucceeded = "succeeded" // every step succeeded
	StatusFailed    = "failed"    // a step failed, or the run could not start
	StatusCancelled = "cancelled" // cancelled by the user
	StatusSkipped   = "skipped"   // (steps only) not run because an ancestor did not succeed
)

// Terminal reports whether a run or step status is final.
func Terminal(status string) bool {
	switch status {
	case StatusSucceeded, StatusFailed, StatusCancelled, StatusSkipped:
		return true
	}
	return false
}

// Run is the state of one run as the API shows it.
type Run struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Source     string     `json:"source,omitempty"`
	Runtime    string     `json:"runtime"`
	Status     string     `json:"status"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// RunDir is where the run's objects live in the store; ObjectStoreURL points at it.
	RunDir         string `json:"run_dir"`
	ObjectStoreURL string `json:"object_storage_url,omitempty"`
	// KFPRunID and RunURL are set for runs on Kubeflow Pipelines.
	KFPRunID string  `json:"kfp_run_id,omitempty"`
	RunURL   string  `json:"run_url,omitempty"`
	Steps    []*Step `json:"steps"`
	// Packaging reports the packaging and upload of the steps' files, per step, while the run is
	// pending (and afterwards, as a record of what was uploaded or found unchanged).
	Packaging map[string]Progress `json:"packaging,omitempty"`
}

// Step is the state of one step (node) of a run.
type Step struct {
	ID      string   `json:"id"`
	Label   string   `json:"label"`
	File    string   `json:"file"`
	Parents []string `json:"parents,omitempty"`
	// KFPTask is the step's DAG task name in KFP (what the KFP UI shows), for runs on KFP.
	KFPTask    string     `json:"kfp_task,omitempty"`
	Status     string     `json:"status"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Message    string     `json:"message,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

func (r *Run) step(id string) *Step {
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// clone returns a deep copy, so callers outside the manager's lock never share state with it.
func (r *Run) clone() *Run {
	c := *r
	if r.Packaging != nil {
		c.Packaging = make(map[string]Progress, len(r.Packaging))
		for k, v := range r.Packaging {
			c.Packaging[k] = v
		}
	}
	c.Steps = make([]*Step, len(r.Steps))
	for i, s := range r.Steps {
		sc := *s
		c.Steps[i] = &sc
	}
	return &c
}

// newID returns a run id that sorts by creation time and is safe in object keys and URLs.
func newID(now time.Time) string {
	return now.UTC().Format("20060102-150405") + "-" + randHex(4)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
