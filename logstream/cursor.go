package logstream

import (
	"context"
)

// Cursor reads a whole run (its events and the lines of all its steps) from a position. It is the
// simple decoded reader kept for callers that do not multiplex; the websocket handler reads with
// Read and Watch directly.
type Cursor struct {
	s      *Store
	run    string
	events int64
	steps  map[string]int64
	wake   <-chan struct{}
	stop   func()
	// MaxLines caps the lines one poll returns per step.
	MaxLines int
}

// NewCursor starts reading a run from its beginning. Call Close when done.
func (s *Store) NewCursor(runID string) *Cursor {
	wake, stop := s.Watch(runID)
	return &Cursor{s: s, run: runID, steps: map[string]int64{}, wake: wake, stop: stop, MaxLines: 1000}
}

// Close stops watching the run.
func (c *Cursor) Close() { c.stop() }

// StepLines are new lines of one step.
type StepLines struct {
	Step  string `json:"step"`
	Lines []Line `json:"lines"`
}

// Batch is what one poll returns: lines first, then events; an event is held back while a step
// still has unread lines, so a step's end never overtakes its own lines.
type Batch struct {
	Lines  []StepLines
	Events []Event
}

// Empty reports whether the batch carries nothing.
func (b Batch) Empty() bool { return len(b.Lines) == 0 && len(b.Events) == 0 }

// Poll returns what is new without waiting, and a channel that receives a value at the next change.
func (c *Cursor) Poll() (Batch, <-chan struct{}) {
	var b Batch
	behind := false
	for _, id := range c.s.Steps(c.run) {
		after := c.steps[id]
		ch, err := c.s.Read(context.Background(), c.run, id, after, 1<<20)
		if err != nil {
			continue
		}
		var lines []Line
		for _, r := range ch.Records {
			if len(lines) >= c.MaxLines {
				break
			}
			if l, err := r.Decode(); err == nil {
				lines = append(lines, l)
			}
			after = r.Seq
		}
		if ch.Gap != nil && len(ch.Records) == 0 {
			after = ch.Gap.To
		}
		if after < ch.Head {
			behind = true
		}
		c.steps[id] = after
		if len(lines) > 0 {
			b.Lines = append(b.Lines, StepLines{Step: id, Lines: lines})
		}
	}
	if !behind {
		b.Events = c.s.Events(c.run, c.events)
		if n := len(b.Events); n > 0 {
			c.events = b.Events[n-1].Seq
		}
	}
	return b, c.wake
}

// Next returns what is new since the last call, waiting until something is or ctx is done.
func (c *Cursor) Next(ctx context.Context) (Batch, error) {
	for {
		b, changed := c.Poll()
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
