// Package logstream holds the live logs of runs: per step, lines numbered at the source (seq from 1,
// no holes), plus a run-level sequence of status events. Readers pull from it at their own pace
// through a Cursor: appending never waits for a reader, so a slow viewer can never slow a running
// step. It imports nothing but the standard library so it can be tested with plain goroutines.
package logstream

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Streams a line can come from.
const (
	Stdout = "stdout"
	Stderr = "stderr"
	// System lines are written by kfbridge itself (e.g. "downloading inputs"), not by user code.
	System = "system"
)

// Line is one line of a step's output.
type Line struct {
	// Seq numbers the step's lines from 1 with no holes; it is assigned by the step runner.
	Seq    int64     `json:"seq"`
	TS     time.Time `json:"ts"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
	// Partial marks a piece of a line that was split because it exceeded the line limit; the
	// next line continues it.
	Partial bool `json:"partial,omitempty"`
}

// Event types.
const (
	EventStep     = "step"     // a step changed status
	EventRun      = "run"      // the run changed status
	EventProgress = "progress" // packaging/upload progress
)

// Event is a run-level status event. Events are numbered per run from 1.
type Event struct {
	Seq      int64     `json:"seq"`
	TS       time.Time `json:"ts"`
	Type     string    `json:"type"`
	Step     string    `json:"step,omitempty"`
	Status   string    `json:"status,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Message  string    `json:"message,omitempty"`
	// Data carries type-specific detail (e.g. progress counters).
	Data any `json:"data,omitempty"`
}

// Store is the in-memory log store of all runs. The zero value is not usable; call NewStore.
type Store struct {
	mu   sync.Mutex
	runs map[string]*runLog
	now  func() time.Time
}

type runLog struct {
	// changed is closed (and replaced) whenever anything in the run changes: a broadcast to every
	// cursor waiting on the run without holding a reference to any of them.
	changed chan struct{}
	steps   map[string]*stepLog
	events  []Event
}

type stepLog struct {
	lines []Line
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{runs: make(map[string]*runLog), now: time.Now}
}

// run returns the run's log, creating it. The caller holds s.mu.
func (s *Store) run(id string) *runLog {
	r := s.runs[id]
	if r == nil {
		r = &runLog{changed: make(chan struct{}), steps: make(map[string]*stepLog)}
		s.runs[id] = r
	}
	return r
}

func (r *runLog) step(id string) *stepLog {
	st := r.steps[id]
	if st == nil {
		st = &stepLog{}
		r.steps[id] = st
	}
	return st
}

func (r *runLog) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Append adds lines of one step. Lines the store already holds (seq <= last) are ignored, so a
// producer that retries never duplicates; appending stops at the first hole (seq > last+1), so
// nothing is stored out of order. It returns the highest seq now held contiguously: a producer
// resends everything after it.
func (s *Store) Append(runID, stepID string, lines []Line) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(runID)
	st := r.step(stepID)
	last := int64(len(st.lines))
	added := false
	for _, l := range lines {
		if l.Seq <= last {
			continue
		}
		if l.Seq != last+1 {
			break
		}
		st.lines = append(st.lines, l)
		last++
		added = true
	}
	if added {
		r.notify()
	}
	return last
}

// LastSeq returns the highest seq held for a step (0 if none).
func (s *Store) LastSeq(runID, stepID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runs[runID]; r != nil {
		if st := r.steps[stepID]; st != nil {
			return int64(len(st.lines))
		}
	}
	return 0
}

// Publish appends a run-level event, numbering it and stamping it if TS is zero.
func (s *Store) Publish(runID string, ev Event) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(runID)
	ev.Seq = int64(len(r.events)) + 1
	if ev.TS.IsZero() {
		ev.TS = s.now()
	}
	r.events = append(r.events, ev)
	r.notify()
	return ev
}

// Lines returns up to max lines of a step with seq > after (max <= 0 means all).
func (s *Store) Lines(runID, stepID string, after int64, max int) []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[runID]
	if r == nil {
		return nil
	}
	st := r.steps[stepID]
	if st == nil {
		return nil
	}
	return copyLines(st.lines, after, max)
}

func copyLines(lines []Line, after int64, max int) []Line {
	if after < 0 {
		after = 0
	}
	if after >= int64(len(lines)) {
		return nil
	}
	out := lines[after:]
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return append([]Line(nil), out...)
}

// Cursor reads a whole run — its events and the lines of all its steps — from a position, first
// what is already stored and then live, with no gap and no duplicate.
type Cursor struct {
	s      *Store
	run    string
	events int64
	steps  map[string]int64
	// MaxLines caps the lines one Next returns per step, so a reader catching up on a long log
	// sends bounded frames.
	MaxLines int
}

// NewCursor starts reading a run from its beginning.
func (s *Store) NewCursor(runID string) *Cursor {
	return &Cursor{s: s, run: runID, steps: make(map[string]int64), MaxLines: 1000}
}

// Seek positions the cursor after the given seq of a step (to resume a log).
func (c *Cursor) Seek(stepID string, afterSeq int64) { c.steps[stepID] = afterSeq }

// SeekEvents positions the cursor after the given event seq.
func (c *Cursor) SeekEvents(afterSeq int64) { c.events = afterSeq }

// StepLines are new lines of one step.
type StepLines struct {
	Step  string `json:"step"`
	Lines []Line `json:"lines"`
}

// Batch is what one Next returns: lines first, then events. It is read in one consistent
// snapshot, so an event published after a step's last line (a step ending) never arrives before
// that line.
type Batch struct {
	Lines  []StepLines
	Events []Event
}

// Empty reports whether the batch carries nothing.
func (b Batch) Empty() bool { return len(b.Lines) == 0 && len(b.Events) == 0 }

// Next returns what is new since the last call, waiting until something is or ctx is done.
func (c *Cursor) Next(ctx context.Context) (Batch, error) {
	for {
		b, changed := c.poll()
		if !b.Empty() {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		case <-changed:
		}
	}
}

// Poll returns what is new without waiting, and a channel closed at the next change.
func (c *Cursor) Poll() (Batch, <-chan struct{}) { return c.poll() }

func (c *Cursor) poll() (Batch, <-chan struct{}) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run(c.run)
	var b Batch
	ids := make([]string, 0, len(r.steps))
	for id := range r.steps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		after := c.steps[id]
		lines := copyLines(r.steps[id].lines, after, c.MaxLines)
		if len(lines) > 0 {
			b.Lines = append(b.Lines, StepLines{Step: id, Lines: lines})
			c.steps[id] = lines[len(lines)-1].Seq
		}
	}
	// Events are held back while a step still has unread lines beyond MaxLines, so a step's end
	// never overtakes its own lines.
	if !c.behind(r) && c.events < int64(len(r.events)) {
		b.Events = append([]Event(nil), r.events[c.events:]...)
		c.events = int64(len(r.events))
	}
	return b, r.changed
}

func (c *Cursor) behind(r *runLog) bool {
	for id, st := range r.steps {
		if c.steps[id] < int64(len(st.lines)) {
			return true
		}
	}
	return false
}

// Events returns a run's events with seq > after.
func (s *Store) Events(runID string, after int64) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[runID]
	if r == nil || after >= int64(len(r.events)) {
		return nil
	}
	if after < 0 {
		after = 0
	}
	return append([]Event(nil), r.events[after:]...)
}
