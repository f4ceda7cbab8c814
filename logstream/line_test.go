package logstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestCanonicalValidEveryBytePosition puts every byte that must be escaped in a JSON string, raw,
// at every position of a line's text (the word-at-a-time scan must see it wherever it falls), and
// checks the line is refused; escaped by AppendJSON it must be accepted and decode to the text.
func TestCanonicalValidEveryBytePosition(t *testing.T) {
	ts := time.Date(2026, 11, 28, 13, 0, 0, 123456789, time.UTC)
	var bad []byte
	for c := 0; c < 0x20; c++ {
		bad = append(bad, byte(c))
	}
	bad = append(bad, '"', '\\')
	for n := 0; n <= 40; n++ {
		for pos := 0; pos < n; pos++ {
			for _, c := range bad {
				text := []byte(strings.Repeat("a", n))
				text[pos] = c
				good := AppendJSON(nil, Line{Seq: 7, TS: ts, Stream: Stdout, Text: string(text)})
				if !canonicalValid(good) {
					t.Fatalf("escaped %q refused: %s", c, good)
				}
				var l Line
				if err := json.Unmarshal(good, &l); err != nil || l.Text != string(text) {
					t.Fatalf("escaped %q: %v %q", c, err, l.Text)
				}
				raw := fmt.Appendf(nil, `{"seq":7,"ts":"2026-11-28T13:00:00Z","stream":"stdout","text":"%s"}`, text)
				if canonicalValid(raw) {
					t.Fatalf("raw %q at %d of %d accepted: %q", c, pos, n, raw)
				}
				// Eight (or sixteen) raw NUL bytes at once must be seen too.
				if c == 0 && pos+16 <= n {
					z := bytes.Clone(text)
					clear(z[pos : pos+16])
					if canonicalValid(fmt.Appendf(nil, `{"seq":7,"ts":"2026-11-28T13:00:00Z","stream":"stdout","text":"%s"}`, z)) {
						t.Fatalf("16 NUL bytes at %d accepted", pos)
					}
				}
			}
		}
	}
}

// TestCanonicalValidRandomLines checks on random lines that canonicalValid never accepts what
// encoding/json refuses, and accepts every line AppendJSON writes.
func TestCanonicalValidRandomLines(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab \"\\\t\n\x00\x1f\x7f/uU0f\xc3\xa9")
	for i := 0; i < 20000; i++ {
		text := make([]byte, r.IntN(60))
		for j := range text {
			text[j] = alphabet[r.IntN(len(alphabet))]
		}
		enc := AppendJSON(nil, Line{Seq: int64(i + 1), TS: time.Now(), Stream: Stderr, Text: string(text), Partial: i%2 == 0})
		if !canonicalValid(enc) || !json.Valid(enc) {
			t.Fatalf("AppendJSON output refused: %q", enc)
		}
		for _, form := range []string{`{"seq":%d,"ts":"2026-11-28T13:00:00Z","stream":"stdout","text":"%s"}`,
			`{"seq":%d,"ts":"2026-11-28T13:00:00Z","stream":"x\n","text":"%s","partial":true}`} {
			raw := fmt.Appendf(nil, form, i+1, text)
			if canonicalValid(raw) && !json.Valid(raw) {
				t.Fatalf("accepted invalid JSON %q", raw)
			}
		}
	}
}

// TestAppendNDJSONSpoolsRetriedBatches pushes batches that overlap what the store holds (a
// producer's retries) and lines in a non-canonical form, and checks the spool, read back past
// the ring, holds every line once, in order.
func TestAppendNDJSONSpoolsRetriedBatches(t *testing.T) {
	s := New(Options{RingLines: 16, SpoolDir: t.TempDir()})
	defer s.Close()
	ts := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	line := func(seq int) []byte {
		return AppendJSON(nil, Line{Seq: int64(seq), TS: ts, Stream: Stdout, Text: fmt.Sprintf("line %d", seq)})
	}
	batch := func(seqs ...int) []byte {
		var b []byte
		for _, q := range seqs {
			b = append(append(b, line(q)...), '\n')
		}
		return b
	}
	steps := [][]byte{
		batch(1, 2, 3),
		batch(2, 3, 4, 5),       // retry overlapping the head
		batch(6, 7, 3, 8),       // an old line in the middle is ignored
		batch(9, 11, 12),        // a hole stops the batch at 9
		batch(10, 11, 12, 13),   // then the rest
		append(batch(14), '\n'), // a blank line
		[]byte(`{"ts":"2026-11-28T13:00:00Z","seq":15,"stream":"stdout","text":"line 15"}` + "\n"), // re-encoded
		bytes.TrimSuffix(batch(16, 17), []byte{'\n'}),                                              // no final newline
	}
	for i, b := range steps {
		if _, err := s.AppendNDJSON("r", "s", b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	for i := 0; i < 300; i++ { // past the ring, and past a spool index entry
		seq := 18 + i
		if _, err := s.AppendNDJSON("r", "s", batch(seq)); err != nil {
			t.Fatal(err)
		}
	}
	const last = 317
	if got := s.LastSeq("r", "s"); got != last {
		t.Fatalf("last seq %d", got)
	}
	// Read from several starting points: from the spool (before the ring) and from the ring.
	for start := int64(0); start < last; start += 97 {
		after := start
		for after < last {
			c, err := s.Read(t.Context(), "r", "s", after, 512)
			if err != nil || c.Gap != nil || len(c.Records) == 0 {
				t.Fatalf("after %d: %v, gap %v, %d records", after, err, c.Gap, len(c.Records))
			}
			for _, rec := range c.Records {
				want := line(int(after) + 1)
				if rec.Seq != after+1 || !bytes.Equal(rec.JSON, want) {
					t.Fatalf("after %d: seq %d %s, want %s", after, rec.Seq, rec.JSON, want)
				}
				after++
			}
		}
	}
}

// TestCanonicalValidTimestamps checks the positional timestamp check: every fraction length
// AppendJSON writes is accepted, anything else is left to the decode path.
func TestCanonicalValidTimestamps(t *testing.T) {
	for ns := 1; ns < 1e9; ns *= 10 {
		for _, n := range []int{0, ns, 999999999} {
			l := AppendJSON(nil, Line{Seq: 1, TS: time.Date(2026, 1, 2, 3, 4, 5, n, time.UTC), Stream: Stdout, Text: "x"})
			if !canonicalValid(l) {
				t.Fatalf("refused %s", l)
			}
		}
	}
	for _, ts := range []string{
		"2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.1234567890Z", "2026-01-02T03:04:05", "2026-01-02T03:04:05+00:00",
		"2026-01-02 03:04:05Z", "2026-01-0xT03:04:05Z", "2026/01/02T03:04:05Z", "2026-01-02T03:04:05.12aZ", "",
		"2026-01-02T03:04:5Z", "2026-01-02T03:04:05ZZ",
	} {
		l := fmt.Appendf(nil, `{"seq":1,"ts":"%s","stream":"stdout","text":"x"}`, ts)
		if canonicalValid(l) {
			t.Errorf("accepted ts %q", ts)
		}
	}
}

// TestAppendNDJSONLargeBatch sends batches large enough to be validated in two halves: every
// line is stored in order, and a bad line in either half is reported with its own line number
// and nothing of the batch is stored.
func TestAppendNDJSONLargeBatch(t *testing.T) {
	ts := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	mk := func(from, n int, badAt int) []byte {
		var b []byte
		for k := 0; k < n; k++ {
			if k == badAt {
				b = append(b, `{"seq":1,"ts":"x","stream":"stdout","text":"a`...) // unterminated
				b = append(b, 0, '"', '}', '\n')
				continue
			}
			b = AppendJSON(b, Line{Seq: int64(from + k), TS: ts, Stream: Stdout, Text: fmt.Sprintf("line %d %s", from+k, strings.Repeat("z", 100))})
			b = append(b, '\n')
		}
		return b
	}
	const n = 2000 // ~300 KiB
	if len(mk(1, n, -1)) < 2*parallelParse {
		t.Fatal("batch too small to be split")
	}
	for _, badAt := range []int{10, n - 10} {
		s := New(Options{SpoolDir: t.TempDir()})
		_, err := s.AppendNDJSON("r", "s", mk(1, n, badAt))
		if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", badAt+1)) {
			t.Fatalf("bad line %d: err %v", badAt+1, err)
		}
		if got := s.LastSeq("r", "s"); got != 0 {
			t.Fatalf("a refused batch stored %d lines", got)
		}
		s.Close()
	}
	s := New(Options{SpoolDir: t.TempDir(), RingLines: 100})
	defer s.Close()
	for from := 1; from <= 3*n; from += n {
		if last, err := s.AppendNDJSON("r", "s", mk(from, n, -1)); err != nil || last != int64(from+n-1) {
			t.Fatalf("batch from %d: last %d, %v", from, last, err)
		}
	}
	after := int64(0)
	for after < 3*n {
		c, err := s.Read(t.Context(), "r", "s", after, 64<<10)
		if err != nil || len(c.Records) == 0 {
			t.Fatalf("after %d: %v", after, err)
		}
		for _, rec := range c.Records {
			l, err := rec.Decode()
			if err != nil || l.Seq != after+1 || !strings.HasPrefix(l.Text, fmt.Sprintf("line %d ", after+1)) {
				t.Fatalf("after %d: %+v %v", after, l, err)
			}
			after++
		}
	}
}
