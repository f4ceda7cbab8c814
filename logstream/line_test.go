package logstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
		if _, err := s.AppendNDJSON(context.Background(), "r", "s", b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	for i := 0; i < 300; i++ { // past the ring, and past a spool index entry
		seq := 18 + i
		if _, err := s.AppendNDJSON(context.Background(), "r", "s", batch(seq)); err != nil {
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
		_, err := s.AppendNDJSON(context.Background(), "r", "s", mk(1, n, badAt))
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
		if last, err := s.AppendNDJSON(context.Background(), "r", "s", mk(from, n, -1)); err != nil || last != int64(from+n-1) {
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

// TestAppendNDJSONOutOfOrder delivers consecutive batches concurrently in reverse order, as
// pipelined pushes on separate connections may arrive: each waits for the lines before it, so the
// store ends up with every line once, in order. A batch after a hole that is never filled is
// answered with what is held once OrderWait has passed (the runner then resends from there).
func TestAppendNDJSONOutOfOrder(t *testing.T) {
	ts := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	batch := func(from, n int) []byte {
		var b []byte
		for k := from; k < from+n; k++ {
			b = AppendJSON(b, Line{Seq: int64(k), TS: ts, Stream: Stdout, Text: fmt.Sprintf("line %d", k)})
			b = append(b, '\n')
		}
		return b
	}
	s := New(Options{SpoolDir: t.TempDir(), RingLines: 50})
	defer s.Close()
	const batches, per = 8, 100
	answers := make(chan int64, batches)
	for i := batches - 1; i >= 0; i-- {
		body := batch(1+i*per, per)
		go func() {
			last, err := s.AppendNDJSON(context.Background(), "r", "s", body)
			if err != nil {
				t.Error(err)
			}
			answers <- last
		}()
		time.Sleep(5 * time.Millisecond) // later batches really arrive first
	}
	top := int64(0)
	for range batches {
		top = max(top, <-answers)
	}
	if top != batches*per || s.LastSeq("r", "s") != batches*per {
		t.Fatalf("held %d, answers up to %d, want %d", s.LastSeq("r", "s"), top, batches*per)
	}
	ch, err := s.Read(context.Background(), "r", "s", 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range ch.Records {
		if rec.Seq != int64(i+1) || !bytes.Contains(rec.JSON, fmt.Appendf(nil, `"line %d"`, i+1)) {
			t.Fatalf("record %d: seq %d %s", i, rec.Seq, rec.JSON)
		}
	}
	if len(ch.Records) != batches*per {
		t.Fatalf("read %d records", len(ch.Records))
	}

	// A hole nobody fills: the batch is answered with what is held, after about OrderWait.
	start := time.Now()
	last, err := s.AppendNDJSON(context.Background(), "r", "s", batch(batches*per+10, 5))
	if err != nil || last != batches*per {
		t.Fatalf("after a hole: last %d, %v", last, err)
	}
	if d := time.Since(start); d < OrderWait/2 {
		t.Fatalf("a batch after a hole was answered after %v, without waiting for the lines before it", d)
	}
	// A cancelled request stops waiting at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if _, err := s.AppendNDJSON(ctx, "r", "s", batch(batches*per+10, 5)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > OrderWait/2 {
		t.Fatalf("a cancelled push waited %v", d)
	}
}

// TestCanonicalValidRefusesInvalidUTF8 checks that the fast path, which is now the only UTF-8
// check of a pushed line, refuses invalid UTF-8 anywhere in the text or stream (ParseRecord then
// re-encodes the line with U+FFFD) and accepts valid multi-byte text at every alignment.
func TestCanonicalValidRefusesInvalidUTF8(t *testing.T) {
	const form = `{"seq":7,"ts":"2026-11-28T13:00:00Z","stream":%s,"text":"%s"%s}`
	for n := 0; n <= 40; n++ {
		for pos := 0; pos <= n; pos++ {
			for _, partial := range []string{"", `,"partial":true`} {
				ok := []byte(strings.Repeat("a", pos) + "é€😀" + strings.Repeat("b", n-pos))
				if !canonicalValid(fmt.Appendf(nil, form, `"stdout"`, ok, partial)) {
					t.Fatalf("valid UTF-8 at %d of %d refused", pos, n)
				}
				for _, bad := range []string{"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf"} {
					text := []byte(strings.Repeat("a", pos) + bad + strings.Repeat("b", n-pos))
					if canonicalValid(fmt.Appendf(nil, form, `"stdout"`, text, partial)) {
						t.Fatalf("invalid UTF-8 %q at %d of %d accepted in the text", bad, pos, n)
					}
					// An escape sends the text down the jsonString path.
					esc := append([]byte(`\n`), text...)
					if canonicalValid(fmt.Appendf(nil, form, `"stdout"`, esc, partial)) {
						t.Fatalf("invalid UTF-8 %q accepted after an escape", bad)
					}
					if canonicalValid(fmt.Appendf(nil, form, `"x`+bad+`"`, "a", partial)) {
						t.Fatalf("invalid UTF-8 %q accepted in the stream", bad)
					}
				}
			}
		}
	}
	rec, err := ParseRecord([]byte(`{"seq":7,"ts":"2026-11-28T13:00:00Z","stream":"stdout","text":"a` + "\xff" + `b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := rec.Decode(); err != nil || l.Text != "a\ufffdb" || !utf8.Valid(rec.JSON) {
		t.Fatalf("invalid UTF-8 stored as %q (%v)", rec.JSON, err)
	}
}

// refCanonicalTS is the byte-by-byte timestamp check canonicalTS replaced, plus time.Parse for the
// date's ranges, kept as its reference.
func refCanonicalTS(b []byte, i int) (int, bool) {
	if len(b)-i < 21 {
		return i, false
	}
	t := b[i : i+20]
	if t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' {
		return i, false
	}
	for _, k := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if t[k]-'0' > 9 {
			return i, false
		}
	}
	// …and, since the date's ranges are checked too, a time time.Parse accepts.
	if _, err := time.Parse("2006-01-02T15:04:05", string(t[:19])); err != nil {
		return i, false
	}
	i += 19
	if b[i] == '.' {
		j := i + 1
		for j < len(b) && b[j]-'0' <= 9 && j-i <= 9 {
			j++
		}
		if j == i+1 || j >= len(b) {
			return i, false
		}
		i = j
	}
	if b[i] != 'Z' {
		return i, false
	}
	return i + 1, true
}

// TestCanonicalTSMatchesReference mutates every byte of timestamps with 0 to 10 fraction digits
// into characters around the digit range and checks the word-at-a-time check agrees with the
// byte-by-byte reference wherever a line could hold the timestamp.
func TestCanonicalTSMatchesReference(t *testing.T) {
	subst := []byte{'0', '1', '2', '3', '5', '6', '9', '/', ':', '-', 'T', 'Z', '.', '"', 0, 0x7f, 0x80, 0xb9, 0xff, 'a'}
	for _, date := range []string{"2026-12-07T09:08:07", "2024-02-29T23:59:59", "2000-02-29T00:00:00", "2026-11-30T19:39:29"} {
		for frac := 0; frac <= 10; frac++ {
			ts := date
			if frac > 0 {
				ts += "." + strings.Repeat("5", frac)
			}
			ts += "Z"
			for pos := -1; pos < len(ts); pos++ {
				for _, c := range subst {
					b := []byte(`{"seq":1,"ts":"` + ts + `","stream":"stdout","text":"x"}`)
					i := len(`{"seq":1,"ts":"`)
					if pos >= 0 {
						b[i+pos] = c
					}
					gotI, gotOK := canonicalTS(b, i)
					wantI, wantOK := refCanonicalTS(b, i)
					if gotOK != wantOK || gotOK && gotI != wantI {
						t.Fatalf("%q: got %d %v, reference %d %v", b, gotI, gotOK, wantI, wantOK)
					}
				}
			}
		}
	}
	// Whole-line check of the dates that exist only in leap years, and those that never do.
	for date, ok := range map[string]bool{"2024-02-29": true, "2000-02-29": true, "2100-02-29": false, "2026-02-29": false,
		"2026-04-31": false, "2026-12-31": true, "2026-00-10": false, "2026-13-01": false, "2026-01-00": false} {
		b := []byte(`{"seq":1,"ts":"` + date + `T00:00:00Z","stream":"stdout","text":"x"}`)
		if canonicalValid(b) != ok {
			t.Errorf("%s: canonicalValid = %v", date, !ok)
		}
	}
}

// TestAppendNDJSONLargeBatchWithBlankLines sends a batch big enough to be validated in two halves
// whose first half holds blank lines (and \r\n endings): the halves share one record array, and
// the hole the blank lines leave must be closed, every line stored once, in order.
func TestAppendNDJSONLargeBatchWithBlankLines(t *testing.T) {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var b []byte
	const n = 3000
	for k := 1; k <= n; k++ {
		b = AppendJSON(b, Line{Seq: int64(k), TS: ts, Stream: Stdout, Text: fmt.Sprintf("line %d %s", k, strings.Repeat("y", 100))})
		switch {
		case k < n/4 && k%10 == 0:
			b = append(b, "\n\n\r\n"...)
		case k%7 == 0:
			b = append(b, '\r', '\n')
		default:
			b = append(b, '\n')
		}
	}
	if len(b) < 2*parallelParse {
		t.Fatal("batch too small to be split")
	}
	s := New(Options{SpoolDir: t.TempDir()})
	defer s.Close()
	last, err := s.AppendNDJSON(context.Background(), "r", "s", b)
	if err != nil || last != n {
		t.Fatalf("last %d, %v", last, err)
	}
	lines := s.Lines("r", "s", 0, 0)
	if len(lines) != n {
		t.Fatalf("%d lines read back", len(lines))
	}
	for i, l := range lines {
		if l.Seq != int64(i+1) || !strings.HasPrefix(l.Text, fmt.Sprintf("line %d ", i+1)) {
			t.Fatalf("line %d: %+v", i+1, l)
		}
	}
}

// TestFastLineAgreesWithGeneralPath checks the one-pass fast path against the general one on
// canonical lines and on every single-byte mutation of them: whatever fastLine accepts, the
// general path accepts too, as canonical (kept byte for byte), with the same seq and length; and
// it is valid JSON. fastLine must also accept the plain lines AppendJSON writes, so the fast path
// is really taken.
func TestFastLineAgreesWithGeneralPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("ab {}\"\\\t\n\r\x00\x1f/0:,\xc3\xa9\xff")
	subst := []byte{'"', '\\', '\n', '\r', 0, 0x1f, '0', '9', '}', ',', 'Z', 0xc3, 0xff, 'x'}
	for i := 0; i < 400; i++ {
		text := make([]byte, 1+r.IntN(90))
		for j := range text {
			text[j] = 'a' + byte(r.IntN(26))
		}
		if i%3 == 0 {
			text[r.IntN(len(text))] = alphabet[r.IntN(len(alphabet))]
		}
		stream := []string{Stdout, Stderr, System, "custom"}[i%4]
		line := AppendJSON(nil, Line{Seq: int64(1 + r.IntN(1_000_000)), TS: time.Unix(1e9+int64(r.IntN(1e9)), int64(r.IntN(1e9))), Stream: stream, Text: string(text), Partial: i%5 == 0})
		plain := stream != "custom" && !bytes.ContainsAny(text, "\"\\\t\n\r\x00\x1f\xc3\xa9\xff")
		if _, _, ok := fastLine(append(bytes.Clone(line), '\n')); ok != plain && len(line) >= 64 {
			t.Fatalf("fastLine(%q) = %v, want %v", line, ok, plain)
		}
		for pos := -1; pos < len(line)+1; pos++ {
			for _, c := range subst {
				b := append(bytes.Clone(line), '\n', '{')
				if pos >= 0 {
					b[pos] = c
				}
				seq, n, ok := fastLine(b)
				if !ok {
					continue
				}
				rec, kept, err := parseRecord(b[:n], false)
				if err != nil || !kept || rec.Seq != seq || len(rec.JSON) != n || !json.Valid(b[:n]) || b[n] != '\n' {
					t.Fatalf("fastLine accepted %q (seq %d, len %d); general path: %v kept %v seq %d", b, seq, n, err, kept, rec.Seq)
				}
			}
		}
	}
	// A seq with a leading zero is not JSON: neither path may keep it as it is.
	b := []byte(`{"seq":07,"ts":"2026-12-07T10:00:00Z","stream":"stdout","text":"a line long enough for the fast path"}`)
	if _, _, ok := fastLine(b); ok {
		t.Fatal("fastLine accepted a leading zero")
	}
	if _, kept, _ := parseRecord(b, false); kept {
		t.Fatal("the general path kept a leading zero")
	}
}
