package logstream

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

// Names of a step's log objects under storage.StepKey(runDir, stepID, …).
const (
	ManifestName  = "manifest.json"
	LogTextName   = "log.txt"
	LogNDJSONName = "log.ndjson.gz"
	// SegmentsDir holds the NDJSON segments the runner uploads while the step runs.
	SegmentsDir = "segments"
)

// SegmentName is the name (under a step's directory) of the segment holding lines first..last.
// Zero-padded seqs make the names sort in seq order.
func SegmentName(first, last int64) string {
	return fmt.Sprintf("%s/%012d-%012d.ndjson", SegmentsDir, first, last)
}

// ParseSegmentName returns the seq range of a segment object's base name.
func ParseSegmentName(base string) (first, last int64, ok bool) {
	a, b, found := strings.Cut(strings.TrimSuffix(base, ".ndjson"), "-")
	if !found || !strings.HasSuffix(base, ".ndjson") {
		return 0, 0, false
	}
	f, err1 := strconv.ParseInt(a, 10, 64)
	l, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || f < 1 || l < f {
		return 0, 0, false
	}
	return f, l, true
}

// ErrNotArchived is returned (wrapped) by an Archive for objects that do not exist.
var ErrNotArchived = errors.New("not archived")

// Segment is one uploaded NDJSON segment of a running step.
type Segment struct {
	First, Last int64
	Name        string // relative to the step's directory
}

// Archive reads the log objects the step runner writes to the object store.
type Archive interface {
	// Manifest returns the step's end record (manifest.json); ErrNotArchived if absent.
	Manifest(ctx context.Context, runID, stepID string) (End, error)
	// Open opens one of the step's objects by name (log.ndjson.gz, log.txt, segments/…).
	Open(ctx context.Context, runID, stepID, name string) (io.ReadCloser, error)
	// Segments lists the step's segments in seq order.
	Segments(ctx context.Context, runID, stepID string) ([]Segment, error)
}

// StoreArchive is the Archive of an object store laid out by storage.RunDir and storage.StepKey.
type StoreArchive struct {
	Store  storage.Store
	Prefix string // the object prefix runs live under (storage.RunDir's prefix)
}

func (a StoreArchive) key(runID, stepID, name string) string {
	return storage.StepKey(storage.RunDir(a.Prefix, runID), stepID, name)
}

func notArchived(err error) error {
	if errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("%w: %v", ErrNotArchived, err)
	}
	return err
}

// Manifest implements Archive.
func (a StoreArchive) Manifest(ctx context.Context, runID, stepID string) (End, error) {
	rc, err := a.Store.Get(ctx, a.key(runID, stepID, ManifestName))
	if err != nil {
		return End{}, notArchived(err)
	}
	defer rc.Close()
	var e End
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&e); err != nil {
		return End{}, fmt.Errorf("read manifest of step %s: %w", stepID, err)
	}
	return e, nil
}

// Open implements Archive.
func (a StoreArchive) Open(ctx context.Context, runID, stepID, name string) (io.ReadCloser, error) {
	rc, err := a.Store.Get(ctx, a.key(runID, stepID, name))
	return rc, notArchived(err)
}

// Segments implements Archive.
func (a StoreArchive) Segments(ctx context.Context, runID, stepID string) ([]Segment, error) {
	infos, err := a.Store.List(ctx, a.key(runID, stepID, SegmentsDir)+"/")
	if err != nil {
		return nil, notArchived(err)
	}
	var out []Segment
	for _, in := range infos {
		base := path.Base(in.Key)
		if f, l, ok := ParseSegmentName(base); ok {
			out = append(out, Segment{First: f, Last: l, Name: SegmentsDir + "/" + base})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First < out[j].First })
	return out, nil
}

// startTailLocked starts polling the archive of a running step. The caller holds r.mu.
func (s *Store) startTailLocked(runID string, st *stepLog) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.tailing || st.completeLocked() {
		return
	}
	st.tailing = true
	s.wg.Add(1)
	go s.tail(runID, st)
}

// tail fills a step's log from the archive while pushes are quiet, until the step's log is whole.
// The push path and the tail complement each other: Append drops what is already held, so lines
// arriving both ways are stored once.
func (s *Store) tail(runID string, st *stepLog) {
	defer s.wg.Done()
	defer func() {
		st.mu.Lock()
		st.tailing = false
		st.mu.Unlock()
	}()
	// A fixed cadence, even while nothing new arrives: a step whose lines only reach the object
	// store is followed about a second behind (the runner's segment cadence plus this one).
	t := time.NewTicker(s.opts.TailInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-st.kick:
		}
		st.mu.Lock()
		complete := st.completeLocked()
		quiet := st.terminal || st.end != nil || s.now().Sub(st.lastAppend) >= s.opts.PushQuiet
		st.mu.Unlock()
		if complete {
			return
		}
		if !quiet {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		done, _ := s.pollArchive(ctx, runID, st.id)
		cancel()
		if done {
			return
		}
	}
}

// pollArchive appends whatever the archive holds beyond the store's last seq. It reports true
// once the manifest was found and the step's log is whole.
func (s *Store) pollArchive(ctx context.Context, runID, stepID string) (bool, error) {
	a := s.opts.Archive
	head := s.LastSeq(runID, stepID)
	if e, err := a.Manifest(ctx, runID, stepID); err == nil {
		if head < e.FinalSeq {
			rc, err := a.Open(ctx, runID, stepID, LogNDJSONName)
			if err != nil {
				return false, err
			}
			err = s.appendStream(runID, stepID, rc, true)
			rc.Close()
			if err != nil {
				return false, err
			}
		}
		s.SetEnd(runID, stepID, e)
		return true, nil
	} else if !errors.Is(err, ErrNotArchived) {
		return false, err
	}
	segs, err := a.Segments(ctx, runID, stepID)
	if err != nil {
		return false, err
	}
	for _, seg := range segs {
		if seg.Last <= head {
			continue
		}
		if seg.First > head+1 {
			break // a hole: an earlier segment is not listed yet
		}
		rc, err := a.Open(ctx, runID, stepID, seg.Name)
		if err != nil {
			return false, err
		}
		err = s.appendStream(runID, stepID, rc, false)
		rc.Close()
		if err != nil {
			return false, err
		}
		head = s.LastSeq(runID, stepID)
	}
	return false, nil
}

// appendStream appends an NDJSON stream (gzip-compressed if gz) in batches, skipping lines the
// store already holds without decoding them.
func (s *Store) appendStream(runID, stepID string, r io.Reader, gz bool) error {
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("read archived log of step %s: %w", stepID, err)
		}
		defer zr.Close()
		r = zr
	}
	head := s.LastSeq(runID, stepID)
	br := bufio.NewReaderSize(r, 256<<10)
	var batch []Record
	size := 0
	flush := func() {
		if len(batch) > 0 {
			head = s.AppendRecords(runID, stepID, batch)
			batch, size = batch[:0], 0
		}
	}
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			if seq, ok := canonicalSeq(line); !ok || seq > head {
				rec, perr := ParseRecord(line)
				if perr != nil {
					return fmt.Errorf("archived log of step %s: %w", stepID, perr)
				}
				batch = append(batch, rec)
				size += len(rec.JSON)
				if size >= 1<<20 {
					flush()
				}
			}
		}
		if errors.Is(err, io.EOF) {
			flush()
			return nil
		}
		if err != nil {
			flush()
			return fmt.Errorf("read archived log of step %s: %w", stepID, err)
		}
	}
}

// loadArchived makes a step the store does not hold readable from the archive: a finished step is
// copied into a spool once; a running step (segments, no manifest yet: this process has not had
// its pushes, or was restarted since) is tailed. It returns nil, nil when the archive has nothing for the step.
func (s *Store) loadArchived(ctx context.Context, runID, stepID string) (*stepLog, error) {
	a := s.opts.Archive
	if a == nil {
		return nil, nil
	}
	missKey := runID + "/" + stepID
	s.mu.Lock()
	if t, ok := s.misses[missKey]; ok && s.now().Sub(t) < s.opts.TailInterval {
		s.mu.Unlock()
		return nil, nil
	}
	s.mu.Unlock()

	r := s.run(runID)
	r.mu.Lock()
	if st := r.steps[stepID]; st != nil {
		r.mu.Unlock()
		if st.ready != nil {
			<-st.ready
		}
		return st, nil
	}
	st := &stepLog{id: stepID, run: runID, kick: make(chan struct{}, 1), ready: make(chan struct{})}
	r.steps[stepID] = st
	r.mu.Unlock()

	found, err := s.fillFromArchive(ctx, runID, st)
	if !found {
		r.mu.Lock()
		// A step that went live during the look-up keeps its (empty) log: its writer is waiting
		// on ready and appends to this very stepLog.
		claimed := st.claimed
		if !claimed {
			delete(r.steps, stepID)
		}
		r.mu.Unlock()
		close(st.ready)
		if claimed {
			return st, nil
		}
		if err == nil {
			s.mu.Lock()
			s.misses[missKey] = s.now()
			s.mu.Unlock()
		}
		return nil, err
	}
	close(st.ready)
	return st, nil
}

// fillFromArchive loads a step being created by loadArchived; st is not yet visible to other
// readers (its ready channel is open), so it is filled directly.
func (s *Store) fillFromArchive(ctx context.Context, runID string, st *stepLog) (bool, error) {
	a := s.opts.Archive
	e, err := a.Manifest(ctx, runID, st.id)
	if err == nil {
		rc, err := a.Open(ctx, runID, st.id, LogNDJSONName)
		if err != nil {
			return false, err
		}
		defer rc.Close()
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return false, fmt.Errorf("read archived log of step %s: %w", st.id, err)
		}
		defer zr.Close()
		br := bufio.NewReaderSize(zr, 256<<10)
		st.mu.Lock()
		defer st.mu.Unlock()
		for {
			line, rerr := readLine(br)
			if len(line) > 0 {
				rec, perr := ParseRecord(line)
				if perr != nil {
					return false, fmt.Errorf("archived log of step %s: %w", st.id, perr)
				}
				if rec.Seq == st.last+1 {
					s.addLocked(st, rec)
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return false, fmt.Errorf("read archived log of step %s: %w", st.id, rerr)
			}
		}
		if st.sp != nil {
			st.sp.flush()
		}
		if e.FinalSeq < st.last {
			e.FinalSeq = st.last
		}
		st.end = &e
		if st.last < e.FinalSeq {
			st.missing = &Gap{From: st.last + 1, To: e.FinalSeq, Reason: GapUnavailable}
		}
		s.endedLocked(st)
		return true, nil
	} else if !errors.Is(err, ErrNotArchived) {
		return false, err
	}
	segs, err := a.Segments(ctx, runID, st.id)
	if err != nil || len(segs) == 0 {
		if errors.Is(err, ErrNotArchived) {
			err = nil
		}
		return false, err
	}
	// A running step: tail it. The runner uploads segments whether or not its pushes reach this
	// process; pushes that do arrive (resent from the seq this store reports) fill the same log,
	// Append keeps each seq once, and the tail only polls while they are quiet.
	st.mu.Lock()
	st.tailing = true
	st.mu.Unlock()
	s.wg.Add(1)
	go func() {
		<-st.ready
		select {
		case st.kick <- struct{}{}:
		default:
		}
		s.tail(runID, st)
	}()
	return true, nil
}
