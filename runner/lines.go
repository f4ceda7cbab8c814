package runner

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kfbridge/kfbridge/logstream"
)

// maxLine is the longest line kept whole; longer lines are split into pieces marked partial, so one
// giant "line" (a progress bar without newlines) can neither exhaust memory nor stall the stream.
const maxLine = 64 << 10

// sink numbers lines and fans each one out, as it is produced, to every destination: the runner's
// own stdout/stderr (what the KFP dashboard shows), the log file and the push queue. It is the one
// place seq numbers are assigned, so every destination sees the same numbering.
type sink struct {
	mu      sync.Mutex
	seq     int64
	bytes   int64
	stdout  io.Writer
	stderr  io.Writer
	logFile io.Writer // raw text, what log.txt becomes
	ndjson  io.Writer // numbered lines, what log.ndjson becomes
	push    func(logstream.Line)
	now     func() time.Time
}

// emit records one line (without its newline) from stream.
func (s *sink) emit(stream string, raw []byte, partial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.bytes += int64(len(raw))
	text := string(raw)
	if !utf8.ValidString(text) {
		// Frames must be valid UTF-8 (JSON, websocket text); the log file keeps the raw bytes.
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	l := logstream.Line{Seq: s.seq, TS: s.now().UTC(), Stream: stream, Text: text, Partial: partial}
	out := s.stdout
	if stream == logstream.Stderr {
		out = s.stderr
	}
	nl := "\n"
	if partial {
		nl = ""
	}
	if out != nil {
		io.WriteString(out, string(raw)+nl)
	}
	if s.logFile != nil {
		io.WriteString(s.logFile, string(raw)+nl)
	}
	if s.ndjson != nil {
		writeNDJSON(s.ndjson, l)
	}
	if s.push != nil {
		s.push(l)
	}
}

// systemf writes a kfbridge line (stream "system") through the same path as user output.
func (s *sink) system(msg string) { s.emit(logstream.System, []byte(msg), false) }

// lastSeq returns the seq of the last line emitted.
func (s *sink) lastSeq() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq, s.bytes
}

// pump reads r line by line and emits each line as soon as its newline arrives. "\r\n" ends a line;
// a lone "\r" stays inside the line for the viewer to collapse.
func (s *sink) pump(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			s.emit(stream, line, false)
		case errors.Is(err, bufio.ErrBufferFull):
			s.emit(stream, line, true)
		case errors.Is(err, io.EOF):
			if len(line) > 0 {
				s.emit(stream, line, false)
			}
			return nil
		default:
			if len(line) > 0 {
				s.emit(stream, line, false)
			}
			return err
		}
	}
}
