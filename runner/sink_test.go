package runner

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// refLines splits out as the runner did when it read its child's pipes through a bufio.Reader
// of maxLine bytes, one ReadSlice per line: the reference for pump's own splitting.
func refLines(out []byte) (lines [][]byte, partial []bool) {
	br := bufio.NewReaderSize(bytes.NewReader(out), maxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			lines, partial = append(lines, bytes.Clone(line)), append(partial, false)
		case errors.Is(err, bufio.ErrBufferFull):
			lines, partial = append(lines, bytes.Clone(line)), append(partial, true)
		default:
			if len(line) > 0 {
				lines, partial = append(lines, bytes.Clone(line)), append(partial, false)
			}
			return lines, partial
		}
	}
}

// chunkReader returns its data in reads of random sizes, as a pipe does.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(r.max))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// randomOutput is what a child might print: short and long lines, lines of about maxLine bytes
// (a newline or "\r\n" on either side of the split), lone \r, invalid UTF-8, empty lines, and
// maybe no newline at the end.
func randomOutput(rng *rand.Rand) []byte {
	var b []byte
	for n := rng.IntN(300); n >= 0; n-- {
		switch rng.IntN(10) {
		case 0:
			b = append(b, bytes.Repeat([]byte{'x'}, maxLine-2+rng.IntN(5))...)
		case 1:
			b = append(b, bytes.Repeat([]byte("long "), rng.IntN(3*maxLine/5))...)
		case 2:
			b = append(b, "bad \xff\xfe \x1b[31mred\x1b[0m \"q\" \\ é\t"...)
		case 3:
			b = append(b, "progress 10%\rprogress 100%"...)
		case 4:
		default:
			b = append(b, "0000123 "...)
			b = append(b, bytes.Repeat([]byte{'p'}, rng.IntN(200))...)
		}
		switch rng.IntN(8) {
		case 0:
			b = append(b, '\r', '\n')
		case 1:
			b = append(b, '\r')
		default:
			b = append(b, '\n')
		}
	}
	if rng.IntN(2) == 0 {
		b = append(b, "no newline at end"...)
	}
	return b
}

// Ensure pump, which reads a pipe in large chunks and writes a chunk's lines together, numbers,
// splits and writes every line exactly as writing the lines one at a time does, split as a
// bufio.Reader of maxLine bytes split them: stdout, log.txt, log.ndjson and the end record are
// byte for byte the same, whatever the read sizes and the log limit.
func TestSinkPumpMatchesLineByLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ts := time.Date(2026, 12, 7, 9, 0, 0, 123456000, time.UTC)
	clock := func() time.Time { return ts }
	for iter := range 30 {
		out := randomOutput(rng)
		limit := int64(0)
		if iter%4 == 0 {
			limit = rng.Int64N(int64(len(out)) + 1)
		}
		var gotOut, gotTxt, gotND bytes.Buffer
		got := newSink(&gotOut, nil, &gotTxt, &gotND, clock, limit)
		r := &chunkReader{data: out, rng: rng, max: []int{100, 5000, readSize}[iter%3]}
		if err := got.pump(logstream.Stdout, r); err != nil {
			t.Fatal(err)
		}
		var wantOut, wantTxt, wantND bytes.Buffer
		want := newSink(&wantOut, nil, &wantTxt, &wantND, clock, limit)
		lines, partial := refLines(out)
		for i, l := range lines {
			want.write(logstream.Stdout, l, partial[i])
		}
		want.flush()
		for _, c := range []struct {
			name      string
			got, want []byte
		}{{"stdout", gotOut.Bytes(), wantOut.Bytes()}, {"log.txt", gotTxt.Bytes(), wantTxt.Bytes()}, {"log.ndjson", gotND.Bytes(), wantND.Bytes()}} {
			if !bytes.Equal(c.got, c.want) {
				t.Fatalf("iteration %d (%d bytes, limit %d): %s differs: %d bytes, want %d; first difference at %d",
					iter, len(out), limit, c.name, len(c.got), len(c.want), firstDiff(c.got, c.want))
			}
		}
		if g, w := got.end(0), want.end(0); g != w {
			t.Fatalf("iteration %d: end %+v, want %+v", iter, g, w)
		}
		for seq := int64(1); seq <= got.seq; seq += 97 {
			g1, g2 := got.offsetOf(seq)
			if w1, w2 := want.offsetOf(seq); g1 != w1 || g2 != w2 {
				t.Fatalf("offsetOf(%d) = %d, %d, want %d, %d", seq, g1, g2, w1, w2)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// scriptedReader returns one chunk per read, and sets the clock to that chunk's time first.
type scriptedReader struct {
	chunks []string
	at     []time.Time
	now    *time.Time
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	*r.now = r.at[0]
	n := copy(p, r.chunks[0])
	r.chunks, r.at = r.chunks[1:], r.at[1:]
	return n, nil
}

// Ensure the lines of one read share the timestamp taken when it returned (a line finished by a
// later read gets the later one), and that timestamps never decrease along the seq order, even
// when the clock goes back (as it may, or when the other stream's pump stamped its read earlier
// but wrote later).
func TestSinkTimestampsPerReadNeverDecrease(t *testing.T) {
	base := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }
	now := base
	var nd bytes.Buffer
	s := newSink(nil, nil, nil, &nd, func() time.Time { return now }, 0)
	r := &scriptedReader{chunks: []string{"a\nb\nc", "c\nd\n", "e\n", "f\ng\n"},
		at: []time.Time{sec(10), sec(20), sec(5), sec(30)}, now: &now}
	if err := s.pump(logstream.Stdout, r); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"a": sec(10), "b": sec(10), "cc": sec(20), "d": sec(20), "e": sec(20), "f": sec(30), "g": sec(30)}
	lines := decodeAll(t, nd.Bytes())
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for _, l := range lines {
		if w, ok := want[l.Text]; !ok || !l.TS.Equal(w) {
			t.Errorf("line %q at %v, want %v", l.Text, l.TS.Sub(base), w.Sub(base))
		}
	}
}

// Ensure writing a chunk of lines allocates nothing per line.
func TestSinkLinesDoNotAllocate(t *testing.T) {
	s := newSink(io.Discard, nil, io.Discard, io.Discard, time.Now, 0)
	chunk := []byte(strings.Repeat("0000123 "+strings.Repeat("p", 90)+"\n", 1000))
	ts := time.Now()
	s.lines(logstream.Stdout, chunk, false, ts)
	if n := testing.AllocsPerRun(50, func() { s.lines(logstream.Stdout, chunk, false, ts) }); n >= 1 {
		t.Fatalf("%v allocations per 1,000 lines", n)
	}
}

// BenchmarkSinkPump measures the sink alone: 1,000,000 lines of about 100 bytes read in 64 KiB
// chunks, written to discarding destinations (log.txt's SHA-256 included).
func BenchmarkSinkPump(b *testing.B) {
	const n = 1_000_000
	raw := make([]byte, 0, n*100)
	for i := range n {
		raw = append(raw, "0000000 "...)
		raw = append(raw, strings.Repeat("p", 90+i%5)...)
		raw = append(raw, '\n')
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		s := newSink(io.Discard, nil, io.Discard, io.Discard, time.Now, 0)
		if err := s.pump(logstream.Stdout, &fixedChunks{raw}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/line")
}

// fixedChunks returns 64 KiB per read, as a buffered program's stdout writes.
type fixedChunks struct{ data []byte }

func (f *fixedChunks) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 64<<10)], f.data)
	f.data = f.data[n:]
	return n, nil
}
