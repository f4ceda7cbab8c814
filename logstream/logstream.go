// Package logstream holds the live logs of runs: per step, lines numbered at the source (seq from 1,
// no holes), plus a run-level sequence of status events. Each step keeps its recent lines in a
// bounded in-memory ring and its whole log in an unlinked spool file on local disk, so memory stays
// bounded however long a step runs. Readers pull at their own pace (Read with an after-seq cursor,
// woken through Watch): appending never waits for a reader, so a slow viewer can never slow a
// running step or other viewers. With an Archive, steps the process does not hold (after a restart)
// are served from the object store, and steps whose runner cannot reach the service are tailed
// from the NDJSON segments the runner uploads while it runs.
package logstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
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

// End describes a finished step's log; the runner sends it (and writes it as manifest.json) after
// its last line.
type End struct {
	FinalSeq  int64  `json:"final_seq"`
	ExitCode  int    `json:"exit_code"`
	Lines     int64  `json:"lines"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// Incomplete is set when the service closed the step's log without the runner's end record
	// (the runner died or could reach neither the service nor the object store).
	Incomplete bool `json:"incomplete,omitempty"`
}

// Gap reports lines From..To that cannot be delivered.
type Gap struct {
	From   int64  `json:"from_seq"`
	To     int64  `json:"to_seq"`
	Reason string `json:"reason"`
}

// Gap reasons.
const (
	GapUnavailable = "unavailable"
	GapTruncated   = "truncated"
	GapEvicted     = "evicted"
)

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// RingLines and RingBytes bound the recent lines of one step kept in memory (65,536 lines,
	// 8 MiB); older lines are read from the spool.
	RingLines int
	RingBytes int
	// SpoolDir is where step spool files are created (default os.TempDir()).
	SpoolDir string
	// Archive, if set, serves steps this process does not hold and tails running steps whose
	// lines stop arriving by push.
	Archive Archive
	// TailInterval is how often a running step's archive is polled (1 s); PushQuiet is how long
	// pushes must have stopped before it is (2 s).
	TailInterval time.Duration
	PushQuiet    time.Duration
	// EndWait is how long a step's terminal status event waits for the step's last lines and
	// end record before the log is closed as incomplete (10 s).
	EndWait time.Duration
	// MaxFinished is how many finished steps stay loaded (256). Past it, the longest-finished
	// step whose archive has its manifest is dropped (its spool file closed) and read back from
	// the archive when asked for, so a long-lived service holds bounded memory, disk and files.
	MaxFinished int
}

func (o *Options) defaults() {
	if o.RingLines <= 0 {
		o.RingLines = 65536
	}
	if o.RingBytes <= 0 {
		o.RingBytes = 8 << 20
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.TailInterval <= 0 {
		o.TailInterval = time.Second
	}
	if o.PushQuiet <= 0 {
		o.PushQuiet = 2 * time.Second
	}
	if o.EndWait <= 0 {
		o.EndWait = 10 * time.Second
	}
	if o.MaxFinished <= 0 {
		o.MaxFinished = 256
	}
}

// endedRingLines is how many recent lines a finished step keeps in memory; the rest is read from
// the spool, so finished steps do not pile up rings.
const endedRingLines = 1024

// Store is the log store of all runs. The zero value is not usable; call New or NewStore.
type Store struct {
	opts   Options
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	runs   map[string]*runLog
	misses map[string]time.Time // run/step -> last archive lookup that found nothing

	// finMu guards finished only, and is never held while taking another lock.
	finMu    sync.Mutex
	finished []finishedStep // in the order the steps finished
}

type finishedStep struct {
	run string
	st  *stepLog
}

type runLog struct {
	id string
	// mu guards everything below; lock order is runLog.mu before stepLog.mu.
	mu      sync.Mutex
	steps   map[string]*stepLog
	events  []Event
	pending []Event // events held back until the step they end has its whole log
	waiters map[chan struct{}]struct{}
	// wakeList is a snapshot of waiters, replaced (never modified) when they change, so notify
	// can signal a thousand viewers without holding the lock.
	wakeList []chan struct{}
}

// setWaitersLocked rebuilds wakeList. The caller holds r.mu.
func (r *runLog) setWaitersLocked() {
	l := make([]chan struct{}, 0, len(r.waiters))
	for w := range r.waiters {
		l = append(l, w)
	}
	r.wakeList = l
}

type stepLog struct {
	id    string
	run   string
	ready chan struct{} // closed once an archived step is loaded; nil when created live
	// claimed (guarded by the run's mu) marks a step a live writer or a running event has used:
	// if it began as a placeholder for an archive look-up that found nothing, it must stay, or
	// the lines appended to it would be orphaned.
	claimed bool

	mu         sync.Mutex
	ring       ring  // the most recent lines
	last       int64 // highest seq held
	sp         *spool
	spErr      error
	end        *End
	missing    *Gap // lines that will never arrive (the log was closed without them)
	lastAppend time.Time
	terminal   bool // a terminal status event was published
	exitCode   *int
	endTimer   *time.Timer
	tailing    bool
	kick       chan struct{}
	finished   bool          // counted in Store.finished
	grew       chan struct{} // closed when lines are added, if a pushed batch waits for them
}

// NewStore returns an empty store with default options and no archive.
func NewStore() *Store { return New(Options{}) }

// New returns an empty store.
func New(opts Options) *Store {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{opts: opts, now: time.Now, ctx: ctx, cancel: cancel, runs: map[string]*runLog{}, misses: map[string]time.Time{}}
}

// Limits returns the ring bounds, for the protocol's hello message.
func (s *Store) Limits() (ringLines, ringBytes int) { return s.opts.RingLines, s.opts.RingBytes }

// Close stops the archive tailers and releases the spool files.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runs {
		r.mu.Lock()
		for _, st := range r.steps {
			st.mu.Lock()
			if st.sp != nil {
				st.sp.close()
			}
			if st.endTimer != nil {
				st.endTimer.Stop()
			}
			st.mu.Unlock()
		}
		r.mu.Unlock()
	}
}

// run returns the run's log, creating it.
func (s *Store) run(id string) *runLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[id]
	if r == nil {
		r = &runLog{id: id, steps: map[string]*stepLog{}, waiters: map[chan struct{}]struct{}{}}
		s.runs[id] = r
	}
	return r
}

func (s *Store) lookupRun(id string) *runLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[id]
}

// step returns a step's log, creating it. The caller holds r.mu.
func (r *runLog) stepLocked(id string) *stepLog {
	st := r.steps[id]
	if st == nil {
		st = &stepLog{id: id, run: r.id, kick: make(chan struct{}, 1)}
		r.steps[id] = st
	}
	st.claimed = true
	return st
}

func (s *Store) liveStep(runID, stepID string) (*runLog, *stepLog) {
	r := s.run(runID)
	r.mu.Lock()
	st := r.stepLocked(stepID)
	r.mu.Unlock()
	if st.ready != nil {
		<-st.ready
	}
	return r, st
}

// notify wakes every watcher of the run without blocking: a watcher that has not consumed its
// last wake-up still holds one, which is all it needs.
func (r *runLog) notify() {
	r.mu.Lock()
	l := r.wakeList
	r.mu.Unlock()
	for _, w := range l {
		if len(w) > 0 {
			continue // already signalled and not yet consumed
		}
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Watch returns a channel that receives a value whenever anything in the run changes (lines,
// ends, events), and a function to stop watching. Readers call Read/Events after each wake-up.
func (s *Store) Watch(runID string) (<-chan struct{}, func()) {
	r := s.run(runID)
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.waiters[ch] = struct{}{}
	r.setWaitersLocked()
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.waiters, ch)
		r.setWaitersLocked()
		r.mu.Unlock()
	}
}

// Notify makes ch receive a value (without blocking: ch should have a buffer of 1) whenever
// anything in the run changes, until stop is called. One channel may watch several runs, so a
// connection multiplexing many subscriptions waits on a single channel.
func (s *Store) Notify(runID string, ch chan struct{}) (stop func()) {
	r := s.run(runID)
	r.mu.Lock()
	r.waiters[ch] = struct{}{}
	r.setWaitersLocked()
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.waiters, ch)
		r.setWaitersLocked()
		r.mu.Unlock()
	}
}

// Append adds lines of one step. Lines the store already holds (seq <= last) are ignored, so a
// producer that retries never duplicates; appending stops at the first hole (seq > last+1), so
// nothing is stored out of order. It returns the highest seq now held contiguously: a producer
// resends everything after it.
func (s *Store) Append(runID, stepID string, lines []Line) int64 {
	recs := make([]Record, len(lines))
	for i, l := range lines {
		recs[i] = Record{Seq: l.Seq, JSON: AppendJSON(nil, l)}
	}
	return s.AppendRecords(runID, stepID, recs)
}

// OrderWait bounds how long AppendNDJSON holds a batch that starts after a hole: the runner keeps
// several pushes in flight on separate connections, so a batch may arrive just before the one it
// follows. Past the bound the batch is answered with what is held, and the runner resends.
const OrderWait = time.Second

// AppendNDJSON adds lines given as NDJSON (the push body and the archive segments' format). The
// stored records share body's memory: the caller must not modify it afterwards. A batch whose
// first line is not the next one waits (at most OrderWait, or until ctx is done) for the lines
// before it, so concurrent pushes of consecutive batches are stored in order whatever order
// they arrive in; validation happens before the wait, so it overlaps the earlier batch's append.
func (s *Store) AppendNDJSON(ctx context.Context, runID, stepID string, body []byte) (int64, error) {
	return s.appendNDJSON(ctx, runID, stepID, body, nil)
}

// AppendPooled is AppendNDJSON for a body from GetBody: the store owns it from the call on and
// reuses its memory once no line in memory points into it (also when the call fails).
func (s *Store) AppendPooled(ctx context.Context, runID, stepID string, body []byte) (int64, error) {
	return s.appendNDJSON(ctx, runID, stepID, body, &pooledBody{buf: body})
}

func (s *Store) appendNDJSON(ctx context.Context, runID, stepID string, body []byte, pooled *pooledBody) (int64, error) {
	// One array for all the batch's records (the halves below fill its two ends), sized by its
	// newlines: a push of a thousand lines costs one allocation here.
	var recs []Record
	var raw bool
	bad, err := -1, error(nil)
	if len(body) >= parallelParse && runtime.GOMAXPROCS(0) > 1 {
		// A large batch is validated in two halves at once: validation is most of what a push
		// costs, and its lines are not visible to viewers before it is done.
		cut := len(body) / 2
		if k := bytes.IndexByte(body[cut:], '\n'); k >= 0 {
			cut += k + 1
		} else {
			cut = len(body)
		}
		nHead := bytes.Count(body[:cut], []byte{'\n'}) // every head line ends with a newline
		recs = make([]Record, 0, nHead+bytes.Count(body[cut:], []byte{'\n'})+1)
		var tail []Record
		var tailRaw bool
		tailBad, tailErr := -1, error(nil)
		var wg sync.WaitGroup
		wg.Go(func() { tail, tailRaw, tailBad, tailErr = parseNDJSON(recs[nHead:nHead], body[cut:]) })
		var head []Record
		head, raw, bad, err = parseNDJSON(recs[:0:nHead], body[:cut])
		wg.Wait()
		if err == nil && tailErr != nil {
			bad, err = len(head)+tailBad, tailErr
		}
		if len(head) < nHead {
			// Blank lines in the head left a hole before the tail's records: close it.
			recs = append(recs[:len(head)], tail...)
		} else {
			recs = recs[:nHead+len(tail)]
		}
		raw = raw && tailRaw
	} else {
		recs, raw, bad, err = parseNDJSON(make([]Record, 0, bytes.Count(body, []byte{'\n'})+1), body)
	}
	if err != nil {
		if pooled != nil {
			putBody(pooled.buf)
		}
		return s.LastSeq(runID, stepID), fmt.Errorf("line %d: %w", bad+1, err)
	}
	if !raw {
		body = nil
	}
	if len(recs) > 0 {
		s.waitFor(ctx, runID, stepID, recs[0].Seq-1)
	}
	return s.appendRecords(runID, stepID, recs, body, pooled), nil
}

// waitFor waits until the step holds line seq, for at most OrderWait.
func (s *Store) waitFor(ctx context.Context, runID, stepID string, seq int64) {
	var timer *time.Timer
	_, st := s.liveStep(runID, stepID)
	for {
		st.mu.Lock()
		if st.last >= seq {
			st.mu.Unlock()
			return
		}
		if st.grew == nil {
			st.grew = make(chan struct{})
		}
		grew := st.grew
		st.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(OrderWait)
			defer timer.Stop()
		}
		select {
		case <-grew:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// parallelParse is the body size from which AppendNDJSON validates two halves concurrently.
const parallelParse = 64 << 10

// parseNDJSON parses the lines of body, appending them to recs. raw reports whether body is exactly the records' stored
// encodings, each followed by one newline (the runner's case: the spool then takes the body in
// one write). On error, bad is the index of the record that failed.
func parseNDJSON(recs []Record, body []byte) (_ []Record, raw bool, bad int, err error) {
	raw = true
	for rest := body; len(rest) > 0; {
		if seq, n, ok := fastLine(rest); ok {
			recs = append(recs, Record{Seq: seq, JSON: rest[:n:n]})
			if n == len(rest) {
				raw = false // no newline after the last line
				break
			}
			rest = rest[n+1:]
			continue
		}
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line, rest = rest, nil
			raw = false
		} else {
			line, rest = rest[:i], rest[i+1:]
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			raw = false
			continue
		}
		rec, kept, err := parseRecord(line, false)
		if err != nil {
			return recs, false, len(recs), err
		}
		if !kept || len(rec.JSON) != len(line) {
			raw = false
		}
		recs = append(recs, rec)
	}
	return recs, raw, -1, nil
}

// AppendRecords adds encoded lines; see Append.
func (s *Store) AppendRecords(runID, stepID string, recs []Record) int64 {
	return s.appendRecords(runID, stepID, recs, nil, nil)
}

// appendRecords is AppendRecords; raw, if not nil, is exactly every record's JSON followed by a
// newline, in order, and is written to the spool in spans rather than record by record.
// body, if not nil, is the pooled push body the records point into: chunks that keep records
// hold a reference to it, and it is recycled here if none does.
func (s *Store) appendRecords(runID, stepID string, recs []Record, raw []byte, body *pooledBody) int64 {
	r, st := s.liveStep(runID, stepID)
	st.mu.Lock()
	added := false
	// recs[first:i] are added records not yet spooled; they are raw[from:off].
	first, from, off := -1, 0, 0
	spoolSpan := func(to int) {
		if first >= 0 {
			s.spoolLocked(st, recs[first:to], raw[from:off])
			s.ringLocked(st, recs[first:to], body)
			first = -1
		}
	}
	i := 0
	for ; i < len(recs); i++ {
		rec := recs[i]
		if rec.Seq <= st.last {
			if raw != nil {
				spoolSpan(i)
				off += len(rec.JSON) + 1
			}
			continue
		}
		if rec.Seq != st.last+1 || (st.end != nil && rec.Seq > st.end.FinalSeq) {
			break
		}
		if raw != nil {
			if first < 0 {
				first, from = i, off
			}
			off += len(rec.JSON) + 1
			st.last = rec.Seq // the span goes to the ring in one piece (spoolSpan)
		} else {
			s.addLocked(st, rec)
		}
		added = true
	}
	if raw != nil {
		spoolSpan(i)
	}
	if added {
		if st.grew != nil {
			close(st.grew)
			st.grew = nil
		}
		if st.sp != nil {
			if err := st.sp.flush(); err != nil && st.spErr == nil {
				st.spErr = err
			}
		}
		st.lastAppend = s.now()
	}
	last := st.last
	complete := st.completeLocked()
	if complete {
		s.endedLocked(st)
	}
	if body != nil && body.refs == 0 {
		// No chunk kept a record of this body (all held already, or copied): reuse it now.
		putBody(body.buf)
		body.buf = nil
	}
	st.mu.Unlock()
	if added {
		if complete {
			s.release(r)
		}
		r.notify()
	}
	return last
}

// spoolLocked writes records to the step's spool, creating it; raw is their JSON with a newline
// after each. The caller holds st.mu.
func (s *Store) spoolLocked(st *stepLog, recs []Record, raw []byte) {
	if st.sp == nil && st.spErr == nil {
		st.sp, st.spErr = newSpool(s.opts.SpoolDir)
	}
	if st.sp != nil && st.spErr == nil {
		if err := st.sp.addRaw(recs, raw); err != nil {
			st.spErr = err
		}
	}
}

// addLocked stores one record in the spool and the ring. The caller holds st.mu.
func (s *Store) addLocked(st *stepLog, rec Record) {
	if st.sp == nil && st.spErr == nil {
		st.sp, st.spErr = newSpool(s.opts.SpoolDir)
	}
	if st.sp != nil && st.spErr == nil {
		if err := st.sp.add(rec); err != nil {
			st.spErr = err
		}
	}
	s.ringLocked(st, []Record{rec}, nil)
}

// ringLocked stores records with consecutive seqs after st.last in the ring; the caller has
// spooled them. The caller holds st.mu.
func (s *Store) ringLocked(st *stepLog, span []Record, body *pooledBody) {
	if len(span) == 0 {
		return
	}
	st.ring.push(span, body)
	st.last = span[len(span)-1].Seq
	st.ring.trim(s.opts.RingLines, s.opts.RingBytes)
}

func (st *stepLog) completeLocked() bool {
	return st.end != nil && (st.last >= st.end.FinalSeq || st.missing != nil)
}

// endedLocked shrinks a finished step's ring: later readers are served from the spool. The
// caller holds st.mu.
func (s *Store) endedLocked(st *stepLog) {
	if !st.finished {
		st.finished = true
		s.finMu.Lock()
		s.finished = append(s.finished, finishedStep{run: st.run, st: st})
		var old *finishedStep
		if len(s.finished) > s.opts.MaxFinished && s.opts.Archive != nil {
			o := s.finished[0]
			s.finished = s.finished[1:]
			old = &o
		}
		s.finMu.Unlock()
		if old != nil && s.ctx.Err() == nil {
			s.wg.Add(1)
			go s.unload(old.run, old.st)
		}
	}
	if st.endTimer != nil {
		st.endTimer.Stop()
		st.endTimer = nil
	}
	if st.sp != nil && st.spErr == nil {
		st.ring.keepLast(endedRingLines)
	}
}

// errUnloaded marks the spool of a step dropped from memory; readers load it again from the archive.
var errUnloaded = errors.New("step log unloaded; read it from the archive")

// unload drops a finished step from memory if the archive holds it whole.
func (s *Store) unload(runID string, st *stepLog) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if _, err := s.opts.Archive.Manifest(ctx, runID, st.id); err != nil {
		return // not archived (yet): keep it, it cannot be read back
	}
	if r := s.lookupRun(runID); r != nil {
		r.mu.Lock()
		if r.steps[st.id] == st {
			delete(r.steps, st.id)
		}
		r.mu.Unlock()
	}
	st.mu.Lock()
	if st.sp != nil {
		st.sp.close()
		st.sp = nil
	}
	st.spErr = errUnloaded
	st.ring.reset()
	st.mu.Unlock()
}

// SetEnd records a step's end (from the runner, or from the archive's manifest). Lines after
// FinalSeq are never accepted; the step's terminal status event is released once every line up to
// FinalSeq is held.
func (s *Store) SetEnd(runID, stepID string, e End) {
	r, st := s.liveStep(runID, stepID)
	st.mu.Lock()
	if st.end == nil || st.end.Incomplete {
		if e.FinalSeq < st.last {
			e.FinalSeq = st.last
		}
		st.end = &e
	}
	complete := st.completeLocked()
	if complete {
		s.endedLocked(st)
	}
	st.mu.Unlock()
	if complete {
		s.release(r)
	}
	r.notify()
}

// LastSeq returns the highest seq held for a step (0 if none).
func (s *Store) LastSeq(runID, stepID string) int64 {
	if st := s.existing(runID, stepID); st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.last
	}
	return 0
}

// StepEnd returns a step's end once its whole log is held, else nil.
func (s *Store) StepEnd(runID, stepID string) *End {
	if st := s.existing(runID, stepID); st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.completeLocked() {
			e := *st.end
			return &e
		}
	}
	return nil
}

// Steps returns the ids of the steps of a run the store holds, sorted.
func (s *Store) Steps(runID string) []string {
	r := s.lookupRun(runID)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.steps))
	for id := range r.steps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *Store) existing(runID, stepID string) *stepLog {
	r := s.lookupRun(runID)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	st := r.steps[stepID]
	r.mu.Unlock()
	if st != nil && st.ready != nil {
		<-st.ready
	}
	return st
}

func terminal(status string) bool {
	switch status {
	case "succeeded", "failed", "cancelled", "skipped":
		return true
	}
	return false
}

// Publish appends a run-level event, numbering it and stamping it if TS is zero. A step's
// terminal status event is held back until the step's log is whole (its end record and every
// line up to the final seq, or EndWait has passed), and later events of the run queue behind it:
// a viewer therefore always sees a step's last line before the step's end. The returned event has
// Seq 0 if it is still held back.
func (s *Store) Publish(runID string, ev Event) Event {
	r := s.run(runID)
	if ev.TS.IsZero() {
		ev.TS = s.now()
	}
	r.mu.Lock()
	if ev.Type == EventStep && ev.Step != "" {
		switch {
		case ev.Status == "running":
			st := r.stepLocked(ev.Step)
			if s.opts.Archive != nil {
				s.startTailLocked(runID, st)
			}
		case terminal(ev.Status):
			if st := r.steps[ev.Step]; st != nil {
				st.mu.Lock()
				st.terminal = true
				st.exitCode = ev.ExitCode
				if !st.completeLocked() && st.endTimer == nil {
					stepID := ev.Step
					st.endTimer = time.AfterFunc(s.opts.EndWait, func() { s.closeIncomplete(runID, stepID) })
				}
				select {
				case st.kick <- struct{}{}:
				default:
				}
				st.mu.Unlock()
			}
		}
	}
	r.pending = append(r.pending, ev)
	out := s.releaseLocked(r, ev)
	r.mu.Unlock()
	r.notify()
	return out
}

// release moves held-back events whose steps are now whole into the event list.
func (s *Store) release(r *runLog) {
	r.mu.Lock()
	s.releaseLocked(r, Event{})
	r.mu.Unlock()
}

func (s *Store) releaseLocked(r *runLog, want Event) Event {
	var out Event
	for len(r.pending) > 0 {
		ev := r.pending[0]
		if ev.Type == EventStep && terminal(ev.Status) {
			if st := r.steps[ev.Step]; st != nil {
				st.mu.Lock()
				// A step that never produced a line and is not being tailed has nothing to wait for.
				held := !st.completeLocked() && (st.last > 0 || st.tailing || st.end != nil)
				st.mu.Unlock()
				if held {
					break
				}
			}
		}
		ev.Seq = int64(len(r.events)) + 1
		r.events = append(r.events, ev)
		r.pending = r.pending[1:]
		if ev.TS.Equal(want.TS) && ev.Type == want.Type && ev.Step == want.Step && ev.Status == want.Status {
			out = ev
		}
	}
	if out.Seq == 0 {
		out = want
	}
	return out
}

// closeIncomplete ends a step's log without (all of) the runner's lines, after EndWait: viewers
// get a gap for what is missing instead of waiting forever.
func (s *Store) closeIncomplete(runID, stepID string) {
	r := s.lookupRun(runID)
	if r == nil {
		return
	}
	r.mu.Lock()
	st := r.steps[stepID]
	r.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.endTimer = nil
	if !st.completeLocked() {
		if st.end == nil {
			code := -1
			if st.exitCode != nil {
				code = *st.exitCode
			}
			st.end = &End{FinalSeq: st.last, Lines: st.last, ExitCode: code, Incomplete: true}
		}
		if st.last < st.end.FinalSeq {
			st.missing = &Gap{From: st.last + 1, To: st.end.FinalSeq, Reason: GapUnavailable}
		}
		s.endedLocked(st)
	}
	st.mu.Unlock()
	s.release(r)
	r.notify()
}

// Events returns a run's events with seq > after.
func (s *Store) Events(runID string, after int64) []Event {
	r := s.lookupRun(runID)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if after < 0 {
		after = 0
	}
	if after >= int64(len(r.events)) {
		return nil
	}
	return append([]Event(nil), r.events[after:]...)
}

// Chunk is what one Read returns.
type Chunk struct {
	// Records are lines with seq After+1.. in order (possibly none).
	Records []Record
	// Gap, when set, reports lines After+1..Gap.To that will never be delivered; the reader
	// continues after Gap.To. It comes before Records.
	Gap *Gap
	// End is set once the reader has everything: the step has ended and the last record (or gap)
	// reaches End.FinalSeq.
	End *End
	// Head is the highest seq the store holds for the step.
	Head int64
	// FromSpool reports that the records came from disk, i.e. the reader is further behind than
	// the in-memory ring.
	FromSpool bool
	// Last is the seq of the last record read (0 when none).
	Last int64
}

// Next returns the seq a reader continues after.
func (c Chunk) Next(after int64) int64 {
	if c.Gap != nil && c.Gap.To > after {
		after = c.Gap.To
	}
	if c.Last > after {
		after = c.Last
	}
	return after
}

// ErrNoStep is returned by Read for a step the store neither holds nor finds in the archive.
var ErrNoStep = errors.New("no log for this step yet")

// Read returns a step's lines with seq > after, up to about maxBytes of JSON (at least one line
// when there is one). It never blocks on writers for long and never waits for new lines: callers
// wait on Watch. A step the store does not hold is looked up in the archive. The records are the
// caller's to keep.
func (s *Store) Read(ctx context.Context, runID, stepID string, after int64, maxBytes int) (Chunk, error) {
	var recs []Record
	c, err := s.ReadTo(ctx, runID, stepID, after, maxBytes, func(part []Record) { recs = copyRecords(recs, part) })
	c.Records = recs
	return c, err
}

// ReadTo is Read for a caller that copies the lines out at once (the websocket writes them into
// a frame): fn receives them, in one or more parts, while they are guaranteed intact — lines in
// memory under the step's lock, so fn must be quick and must not call the store — and must not
// keep them. The returned chunk's Records is nil and Last is the seq of the last line given to fn.
func (s *Store) ReadTo(ctx context.Context, runID, stepID string, after int64, maxBytes int, fn func([]Record)) (Chunk, error) {
	if after < 0 {
		after = 0
	}
	st := s.existing(runID, stepID)
	if st == nil {
		var err error
		if st, err = s.loadArchived(ctx, runID, stepID); err != nil || st == nil {
			if err == nil {
				err = ErrNoStep
			}
			return Chunk{}, err
		}
	}
	st.mu.Lock()
	if st.spErr == errUnloaded {
		// Dropped from memory between the lookup and now: read it back from the archive.
		st.mu.Unlock()
		if st, err := s.loadArchived(ctx, runID, stepID); err != nil || st == nil {
			if err == nil {
				err = ErrNoStep
			}
			return Chunk{}, err
		}
		return s.ReadTo(ctx, runID, stepID, after, maxBytes, fn)
	}
	c := Chunk{Head: st.last}
	if g := st.missing; g != nil && after < g.To && after+1 >= g.From {
		gg := *g
		gg.From = after + 1
		c.Gap = &gg
		after = g.To
	}
	if after >= st.last {
		if st.completeLocked() && after >= st.end.FinalSeq {
			e := *st.end
			c.End = &e
		}
		st.mu.Unlock()
		return c, nil
	}
	ringFirst := st.last - int64(st.ring.n) + 1
	if after+1 >= ringFirst {
		st.ring.each(int(after+1-ringFirst), maxBytes, func(part []Record) {
			fn(part)
			c.Last = part[len(part)-1].Seq
		})
		if c.Last == st.last && st.completeLocked() && st.last >= st.end.FinalSeq {
			e := *st.end
			c.End = &e
		}
		st.mu.Unlock()
		return c, nil
	}
	sp, spErr := st.sp, st.spErr
	var idx []int64
	var size int64
	if sp != nil {
		idx, size = sp.idx, sp.size
	}
	st.mu.Unlock()
	if sp == nil || spErr != nil {
		c.Gap = &Gap{From: after + 1, To: ringFirst - 1, Reason: GapUnavailable}
		return c, nil
	}
	recs, err := sp.read(idx, size, after, maxBytes)
	if err != nil {
		return c, fmt.Errorf("read log of step %s: %w", stepID, err)
	}
	if len(recs) > 0 {
		fn(recs)
		c.Last = recs[len(recs)-1].Seq
	}
	c.FromSpool = true
	return c, nil
}

// Lines returns up to max decoded lines of a step with seq > after (max <= 0 means up to 1 MiB of
// lines). It is a convenience for tests and small tools.
func (s *Store) Lines(runID, stepID string, after int64, max int) []Line {
	var out []Line
	for max <= 0 || len(out) < max {
		c, err := s.Read(context.Background(), runID, stepID, after, 1<<20)
		if err != nil || len(c.Records) == 0 && c.Gap == nil {
			break
		}
		for _, rec := range c.Records {
			if max > 0 && len(out) >= max {
				break
			}
			if l, err := rec.Decode(); err == nil {
				out = append(out, l)
			}
		}
		after = c.Next(after)
		if max <= 0 && len(out) > 0 {
			break
		}
	}
	return out
}
