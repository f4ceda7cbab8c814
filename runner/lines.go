package runner

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// maxLine is the longest line kept whole; longer lines are split into pieces marked partial, so one
// giant "line" (a progress bar without newlines) can neither exhaust memory nor stall the stream.
const maxLine = logstream.MaxLine

// defaultLogLimit caps the bytes of one step's log that are numbered, archived and pushed. Past it
// the step keeps running and its output still reaches the container's stdout, but the archive and
// viewers get one system line saying so and the manifest is marked truncated.
const defaultLogLimit = 1 << 30

// indexEvery is how many lines share one entry of the log.ndjson offset index.
const indexEvery = 256

// readSize is how much pump reads from a pipe at once: room for a whole unfinished line (less than
// maxLine) plus at least as much again, so a flood of output costs few reads and few locks.
const readSize = 2 * maxLine

// ndFlushAt is how many encoded bytes of log.ndjson are gathered before they are written out:
// under a flood of output, few large writes.
const ndFlushAt = 256 << 10

// newline is written to log.txt's hash after a line; a []byte{'\n'} literal passed to the
// hash.Hash interface would be allocated per line.
var newline = []byte{'\n'}

// writerSize is the buffer of the runner's stdout/stderr and of log.txt. Runs of lines read
// together reach them as one write, so the buffer only gathers what arrives a line at a time.
const writerSize = 64 << 10

// sink numbers lines and fans each one out, as it is produced, to every destination: the runner's
// own stdout/stderr (what the KFP dashboard shows), log.txt (raw bytes), log.ndjson (numbered
// lines, which is also the push spool and the source of the archive segments). It is the one place
// seq numbers are assigned, so every destination sees the same numbering. Output is buffered and
// flushed whenever the child's pipes have nothing more to read, so a burst costs a few writes while
// a lone line leaves at once.
type sink struct {
	mu      sync.Mutex
	seq     int64
	bytes   int64 // raw bytes of numbered lines (log.txt's size)
	stdout  *bufio.Writer
	stderr  *bufio.Writer
	logFile *bufio.Writer    // raw text, what log.txt becomes
	ndjson  io.Writer        // numbered lines, what log.ndjson(.gz) becomes
	nd      []byte           // encoded lines not yet written to ndjson (lines are encoded in place)
	ndErr   error            // a failed write to ndjson: later lines are only counted, like bufio
	sum     hash.Hash        // sha256 of log.txt
	now     func() time.Time // called by both pumps at once, without the lock
	limit   int64

	// The timestamp of the lines being written, and its encoding: formatted once, shared by
	// every line of one read (see pump).
	tsAt   time.Time
	tsText []byte

	ndOff       int64   // bytes written to ndjson
	idx         []int64 // idx[k] = offset in ndjson of seq k*indexEvery+1
	flushedSeq  int64
	flushedOff  int64
	truncated   bool
	overflow    int64 // lines past the limit (stdout only)
	subscribers []chan struct{}
	lastFlush   time.Time
	flushTimer  *time.Timer
}

// flushEvery bounds how often a flood of output is flushed: a line that arrives after a quiet
// spell leaves at once, lines arriving faster are flushed together at most this much later, so a
// child writing one line per syscall (python -u) does not cost several writes and a push per line.
const flushEvery = 2 * time.Millisecond

// floodGap and floodPause: see pump.
const (
	floodGap   = 200 * time.Microsecond
	floodPause = 500 * time.Microsecond
)

func newSink(stdout, stderr, logFile, ndjson io.Writer, now func() time.Time, limit int64) *sink {
	if limit <= 0 {
		limit = defaultLogLimit
	}
	w := func(x io.Writer) *bufio.Writer {
		if x == nil {
			return nil
		}
		return bufio.NewWriterSize(x, writerSize)
	}
	return &sink{stdout: w(stdout), stderr: w(stderr), logFile: w(logFile), ndjson: ndjson,
		nd: make([]byte, 0, ndFlushAt+maxLine), sum: sha256.New(), now: now, limit: limit}
}

// stamp sets the timestamp of the lines written next: t, or the previous one if t is not later,
// so timestamps never go back along the seq order (the two pumps stamp their reads before they
// take the lock, and the wall clock may be set back).
func (s *sink) stamp(t time.Time) {
	t = t.Round(0) // compare wall clocks: the wall clock is what is written
	if !t.After(s.tsAt) && s.tsText != nil {
		return
	}
	s.tsAt = t
	s.tsText = logstream.AppendTS(s.tsText[:0], t)
}

// subscribe returns a channel that receives a value after every flush that made new lines
// readable in log.ndjson.
func (s *sink) subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subscribers = append(s.subscribers, ch)
	s.mu.Unlock()
	return ch
}

// emit records one line (without its newline) from stream and flushes it.
func (s *sink) emit(stream string, raw []byte, partial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp(s.now())
	s.emitLocked(stream, raw, partial)
	s.flushLocked()
}

// write records one line like emit but leaves it buffered until the next flush.
func (s *sink) write(stream string, raw []byte, partial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp(s.now())
	s.emitLocked(stream, raw, partial)
}

// lines records the lines at the start of buf, all read from stream at once at ts, and returns
// how many bytes they took: every line ended by a newline within its first maxLine bytes, and
// maxLine-byte pieces of longer ones (partial). With final (nothing more will be read), the rest
// is one last line. The lines are written under one lock, and a run of them that reaches the
// runner's stdout/stderr and log.txt exactly as read (no \r\n, within the limit) is written
// there in one piece.
func (s *sink) lines(stream string, buf []byte, final bool, ts time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp(ts)
	out := s.stdout
	if stream == logstream.Stderr {
		out = s.stderr
	}
	from, pos := 0, 0 // buf[from:pos] is still to be written to out and log.txt
	writeRun := func() {
		if pos > from {
			if out != nil {
				out.Write(buf[from:pos])
			}
			if s.logFile != nil {
				s.logFile.Write(buf[from:pos])
				s.sum.Write(buf[from:pos])
			}
		}
	}
	for pos < len(buf) {
		p := buf[pos:]
		var line []byte
		partial, asRead := false, true // asRead: the line's output is p[:next]
		next := 0
		if i := bytes.IndexByte(p[:min(len(p), maxLine)], '\n'); i >= 0 {
			line, next = p[:i], i+1
			if i > 0 && p[i-1] == '\r' {
				line, asRead = p[:i-1], false
			}
		} else if len(p) >= maxLine {
			line, next, partial = p[:maxLine], maxLine, true
		} else if final {
			line, next, asRead = p, len(p), false
		} else {
			break
		}
		if asRead && !s.truncated && s.bytes+int64(len(line)) <= s.limit {
			s.number(stream, line, partial)
		} else {
			writeRun()
			s.emitLocked(stream, line, partial)
			from = pos + next
		}
		pos += next
	}
	writeRun()
	return pos
}

func (s *sink) emitLocked(stream string, raw []byte, partial bool) {
	out := s.stdout
	if stream == logstream.Stderr {
		out = s.stderr
	}
	if out != nil {
		out.Write(raw)
		if !partial {
			out.WriteByte('\n')
		}
	}
	if s.truncated && stream != logstream.System {
		s.overflow++
		return
	}
	if !s.truncated && stream != logstream.System && s.bytes+int64(len(raw)) > s.limit {
		// System lines (the step's own messages) are still numbered after this point.
		s.emitLocked(logstream.System, []byte(fmt.Sprintf("kfbridge-step: log truncated after %d bytes; further output only goes to the container's stdout", s.bytes)), false)
		s.truncated = true
		s.overflow++
		return
	}
	if s.logFile != nil {
		s.logFile.Write(raw)
		s.sum.Write(raw)
		if !partial {
			s.logFile.WriteByte('\n')
			s.sum.Write(newline)
		}
	}
	s.number(stream, raw, partial)
}

// number gives the line the next seq and appends it to log.ndjson; the caller has written it to
// log.txt.
func (s *sink) number(stream string, raw []byte, partial bool) {
	s.seq++
	if (s.seq-1)%indexEvery == 0 {
		s.idx = append(s.idx, s.ndOff)
	}
	n := int64(len(raw))
	if s.logFile != nil && !partial {
		n++
	}
	s.bytes += n
	// The text goes to JSON as is: the encoder turns invalid UTF-8 into U+FFFD, so frames stay
	// valid while log.txt keeps the raw bytes. It appends to what is still to be written, so a
	// line is not copied once encoded.
	k := len(s.nd)
	s.nd = logstream.AppendJSONBytesTS(s.nd, s.seq, s.tsText, stream, raw, partial)
	s.nd = append(s.nd, '\n')
	s.ndOff += int64(len(s.nd) - k)
	if len(s.nd) >= ndFlushAt {
		s.writeND()
	}
}

// writeND writes the encoded lines to log.ndjson.
func (s *sink) writeND() {
	if s.ndjson != nil && s.ndErr == nil && len(s.nd) > 0 {
		_, s.ndErr = s.ndjson.Write(s.nd)
	}
	s.nd = s.nd[:0]
}

// system writes a kfbridge line (stream "system") through the same path as user output, and
// flushes it.
func (s *sink) system(msg string) {
	s.mu.Lock()
	s.stamp(s.now())
	s.emitLocked(logstream.System, []byte(msg), false)
	s.flushLocked()
	s.mu.Unlock()
}

// flush writes buffered output to every destination and tells subscribers.
func (s *sink) flush() {
	s.mu.Lock()
	s.flushLocked()
	s.mu.Unlock()
}

func (s *sink) flushLocked() {
	s.lastFlush = s.now()
	if s.flushTimer != nil {
		s.flushTimer.Stop()
		s.flushTimer = nil
	}
	for _, w := range []*bufio.Writer{s.stdout, s.stderr, s.logFile} {
		if w != nil {
			w.Flush()
		}
	}
	s.writeND()
	if s.flushedSeq == s.seq {
		return
	}
	s.flushedSeq, s.flushedOff = s.seq, s.ndOff
	for _, ch := range s.subscribers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// idle is called when a reader has consumed everything its child wrote so far: it flushes at
// once after a quiet spell, else at most flushEvery after the previous flush.
func (s *sink) idle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := flushEvery - s.now().Sub(s.lastFlush)
	if wait <= 0 {
		s.flushLocked()
		return
	}
	if s.flushTimer == nil {
		s.flushTimer = time.AfterFunc(wait, s.flush)
	}
}

// flushed returns the last seq readable in log.ndjson and the file's readable size.
func (s *sink) flushed() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushedSeq, s.flushedOff
}

// entryBefore returns the last index entry whose offset is at most limit: line seq starts at off
// (0, 0 when there is none).
func (s *sink) entryBefore(limit int64) (seq, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sort.Search(len(s.idx), func(k int) bool { return s.idx[k] > limit }) - 1
	if k < 0 {
		return 0, 0
	}
	return int64(k)*indexEvery + 1, s.idx[k]
}

// offsetOf returns the index entry at or before seq: the offset of line first, with first <= seq.
func (s *sink) offsetOf(seq int64) (first, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := (seq - 1) / indexEvery
	if k < 0 {
		k = 0
	}
	if k >= int64(len(s.idx)) {
		k = int64(len(s.idx)) - 1
	}
	if k < 0 {
		return 1, 0
	}
	return k*indexEvery + 1, s.idx[k]
}

// end returns the step's end record (call after the last line).
func (s *sink) end(exitCode int) logstream.End {
	s.mu.Lock()
	defer s.mu.Unlock()
	return logstream.End{FinalSeq: s.seq, Lines: s.seq, Bytes: s.bytes, ExitCode: exitCode,
		SHA256: hex.EncodeToString(s.sum.Sum(nil)), Truncated: s.truncated}
}

// lastSeq returns the seq of the last line emitted and the bytes of log.txt.
func (s *sink) lastSeq() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq, s.bytes
}

// pump reads r and emits each line as soon as its newline arrives. "\r\n" ends a line; a lone "\r"
// stays inside the line for the viewer to collapse. The lines of one read arrived together and
// share one timestamp, taken when the read returned. It flushes whenever it has read everything
// the child wrote so far.
func (s *sink) pump(stream string, r io.Reader) error {
	growPipe(r)
	buf := make([]byte, readSize)
	var lastDrain time.Time
	start, end := 0, 0 // buf[start:end]: read, not yet emitted (less than a line)
	for {
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := r.Read(buf[end:])
		end += n
		if n > 0 || err != nil {
			start += s.lines(stream, buf[start:end], err != nil, s.now())
		}
		if err != nil {
			s.flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if n > 0 && start == end {
			s.idle()
			// A child flooding us one small write at a time (python -u) would cost a read per
			// line; when the pipe was drained again right after the previous drain, pause
			// briefly so the next read takes a pipe-full. Sparse output never pauses.
			now := time.Now()
			if now.Sub(lastDrain) < floodGap {
				time.Sleep(floodPause)
				now = time.Now()
			}
			lastDrain = now
		}
	}
}
