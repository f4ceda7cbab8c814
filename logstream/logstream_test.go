package logstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

func line(seq int64, text string) Line {
	return Line{Seq: seq, TS: time.Unix(1700000000, seq).UTC(), Stream: Stdout, Text: text}
}

func TestAppendJSONMatchesDecoder(t *testing.T) {
	cases := []string{"", "plain", "tab\there", "quote\" back\\", "\x1b[31mred\x1b[0m", "cr\rcollapse",
		"bad \xff\xfe utf8", "ctl \x00\x01\x7f", "<html>&amp;", "unicode é ✓ \u2028"}
	for i, text := range cases {
		l := line(int64(i+1), text)
		l.Partial = i%2 == 0
		b := AppendJSON(nil, l)
		if !json.Valid(b) {
			t.Fatalf("%q: invalid JSON %s", text, b)
		}
		var got Line
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		want := l
		// Like encoding/json, every invalid byte becomes one U+FFFD.
		var wantText string
		jt, _ := json.Marshal(text)
		json.Unmarshal(jt, &wantText)
		want.Text = wantText
		if !got.TS.Equal(want.TS) || got.Seq != want.Seq || got.Text != want.Text || got.Partial != want.Partial || got.Stream != want.Stream {
			t.Errorf("%q: round trip gave %+v, want %+v", text, got, want)
		}
		rec, err := ParseRecord(b)
		if err != nil || rec.Seq != l.Seq || !bytes.Equal(rec.JSON, b) {
			t.Errorf("%q: ParseRecord = %v, %v; want the canonical bytes kept", text, rec, err)
		}
	}
	// A non-canonical encoding is accepted and re-encoded canonically.
	rec, err := ParseRecord([]byte(`{"text":"x","seq":7,"stream":"stderr","ts":"2026-01-01T00:00:00Z"}`))
	if err != nil || rec.Seq != 7 || !bytes.HasPrefix(rec.JSON, []byte(`{"seq":7,`)) {
		t.Fatalf("ParseRecord(non-canonical) = %s, %v", rec.JSON, err)
	}
	for _, bad := range []string{`{"seq":0,"text":"x"}`, `not json`, `{"seq":3,"text":"x"`} {
		if _, err := ParseRecord([]byte(bad)); err == nil {
			t.Errorf("ParseRecord(%s) accepted", bad)
		}
	}
}

// readAll reads a step from after with small chunks, checking order and that nothing repeats.
func readAll(t *testing.T, s *Store, run, step string, after int64, maxBytes int) ([]Line, *End) {
	t.Helper()
	var out []Line
	for {
		c, err := s.Read(context.Background(), run, step, after, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if c.Gap != nil {
			t.Fatalf("unexpected gap %+v", c.Gap)
		}
		for _, r := range c.Records {
			if r.Seq != after+1 {
				t.Fatalf("read seq %d after %d", r.Seq, after)
			}
			l, err := r.Decode()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
			after = r.Seq
		}
		if len(c.Records) == 0 {
			return out, c.End
		}
	}
}

func TestRingAndSpoolServeEveryPosition(t *testing.T) {
	s := New(Options{RingLines: 100, SpoolDir: t.TempDir()})
	defer s.Close()
	var batch []Line
	for i := int64(1); i <= 1000; i++ {
		batch = append(batch, line(i, fmt.Sprintf("line %d", i)))
		if len(batch) == 37 || i == 1000 {
			if last := s.Append("r", "s", batch); last != i {
				t.Fatalf("Append returned %d, want %d", last, i)
			}
			batch = nil
		}
	}
	// Duplicates are ignored, a hole stops appending.
	if last := s.Append("r", "s", []Line{line(5, "dup"), line(1002, "hole")}); last != 1000 {
		t.Fatalf("Append(dup, hole) = %d", last)
	}
	for _, after := range []int64{0, 1, 255, 256, 257, 899, 900, 901, 999} {
		got, end := readAll(t, s, "r", "s", after, 300)
		if int64(len(got)) != 1000-after || end != nil {
			t.Fatalf("after %d: %d lines, end %v", after, len(got), end)
		}
		if got[0].Text != fmt.Sprintf("line %d", after+1) {
			t.Fatalf("after %d: first %q", after, got[0].Text)
		}
	}
	c, _ := s.Read(context.Background(), "r", "s", 10, 1<<20)
	if !c.FromSpool {
		t.Error("a read behind the ring should come from the spool")
	}
	s.SetEnd("r", "s", End{FinalSeq: 1000, ExitCode: 3})
	if _, end := readAll(t, s, "r", "s", 990, 1<<20); end == nil || end.ExitCode != 3 {
		t.Fatalf("end = %+v", end)
	}
	if last := s.Append("r", "s", []Line{line(1001, "after end")}); last != 1000 {
		t.Fatalf("a line past the final seq was accepted")
	}
}

func TestTerminalEventWaitsForLastLine(t *testing.T) {
	s := New(Options{SpoolDir: t.TempDir(), EndWait: time.Hour})
	defer s.Close()
	s.Publish("r", Event{Type: EventStep, Step: "a", Status: "running"})
	s.Append("r", "a", []Line{line(1, "one")})
	code := 0
	ev := s.Publish("r", Event{Type: EventStep, Step: "a", Status: "succeeded", ExitCode: &code})
	if ev.Seq != 0 {
		t.Fatalf("terminal event released before the step's end: %+v", ev)
	}
	s.Publish("r", Event{Type: EventRun, Status: "succeeded"})
	if evs := s.Events("r", 0); len(evs) != 1 {
		t.Fatalf("events before end: %+v", evs)
	}
	s.Append("r", "a", []Line{line(2, "two")})
	s.SetEnd("r", "a", End{FinalSeq: 3})
	if evs := s.Events("r", 0); len(evs) != 1 {
		t.Fatalf("events released with a line missing: %+v", evs)
	}
	s.Append("r", "a", []Line{line(3, "three")})
	evs := s.Events("r", 0)
	if len(evs) != 3 || evs[1].Status != "succeeded" || evs[2].Type != EventRun || evs[2].Seq != 3 {
		t.Fatalf("events after end: %+v", evs)
	}
}

func TestIncompleteStepGetsGapAfterEndWait(t *testing.T) {
	s := New(Options{SpoolDir: t.TempDir(), EndWait: 50 * time.Millisecond})
	defer s.Close()
	s.Append("r", "a", []Line{line(1, "one")})
	s.SetEnd("r", "a", End{FinalSeq: 5, ExitCode: 1})
	code := 1
	s.Publish("r", Event{Type: EventStep, Step: "a", Status: "failed", ExitCode: &code})
	time.Sleep(200 * time.Millisecond)
	if len(s.Events("r", 0)) != 1 {
		t.Fatal("terminal event not released after EndWait")
	}
	c, err := s.Read(context.Background(), "r", "a", 1, 1<<20)
	if err != nil || c.Gap == nil || c.Gap.From != 2 || c.Gap.To != 5 || c.End == nil {
		t.Fatalf("chunk after incomplete end = %+v, %v", c, err)
	}
}

// writeArchive writes a finished step's objects the way the runner does.
func writeArchive(t *testing.T, st storage.Store, run, step string, n int64) {
	t.Helper()
	ctx := context.Background()
	var nd bytes.Buffer
	zw := gzip.NewWriter(&nd)
	for i := int64(1); i <= n; i++ {
		zw.Write(append(AppendJSON(nil, line(i, fmt.Sprintf("archived %d", i))), '\n'))
	}
	zw.Close()
	a := StoreArchive{Store: st}
	if err := st.Put(ctx, a.key(run, step, LogNDJSONName), bytes.NewReader(nd.Bytes()), int64(nd.Len())); err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(End{FinalSeq: n, Lines: n, ExitCode: 0})
	if err := st.Put(ctx, a.key(run, step, ManifestName), bytes.NewReader(m), int64(len(m))); err != nil {
		t.Fatal(err)
	}
}

func TestServesFinishedStepFromArchive(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeArchive(t, st, "r", "s", 5000)
	s := New(Options{SpoolDir: t.TempDir(), RingLines: 100, Archive: StoreArchive{Store: st}})
	defer s.Close()
	got, end := readAll(t, s, "r", "s", 0, 64<<10)
	if len(got) != 5000 || end == nil || end.FinalSeq != 5000 || got[4999].Text != "archived 5000" {
		t.Fatalf("got %d lines, end %+v", len(got), end)
	}
	if _, err := s.Read(context.Background(), "r", "missing", 0, 1<<20); err != ErrNoStep {
		t.Fatalf("missing step: %v", err)
	}
}

func TestTailsSegmentsWhenNoPushArrives(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := StoreArchive{Store: st}
	s := New(Options{SpoolDir: t.TempDir(), Archive: a, TailInterval: 20 * time.Millisecond, PushQuiet: 20 * time.Millisecond})
	defer s.Close()
	s.Publish("r", Event{Type: EventStep, Step: "s", Status: "running"})
	putSeg := func(first, last int64) {
		var b bytes.Buffer
		for i := first; i <= last; i++ {
			b.Write(AppendJSON(nil, line(i, fmt.Sprintf("archived %d", i))))
			b.WriteByte('\n')
		}
		if err := st.Put(ctx, a.key("r", "s", SegmentName(first, last)), &b, int64(b.Len())); err != nil {
			t.Fatal(err)
		}
	}
	putSeg(1, 10)
	putSeg(11, 30)
	deadline := time.Now().Add(5 * time.Second)
	for s.LastSeq("r", "s") < 30 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.LastSeq("r", "s"); got != 30 {
		t.Fatalf("tailed up to %d, want 30", got)
	}
	writeArchive(t, st, "r", "s", 40)
	code := 0
	s.Publish("r", Event{Type: EventStep, Step: "s", Status: "succeeded", ExitCode: &code})
	for s.StepEnd("r", "s") == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e := s.StepEnd("r", "s"); e == nil || e.FinalSeq != 40 || s.LastSeq("r", "s") != 40 {
		t.Fatalf("end %+v, last %d", e, s.LastSeq("r", "s"))
	}
	if evs := s.Events("r", 0); len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
}

// TestMemoryBoundedForMillionLines appends 1,000,000 lines to one step and checks the heap stays
// near the ring's bound rather than growing with the log.
func TestMemoryBoundedForMillionLines(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 lines")
	}
	s := New(Options{SpoolDir: t.TempDir()})
	defer s.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	text := strings.Repeat("x", 90)
	batch := make([]Record, 0, 1000)
	for i := int64(1); i <= 1_000_000; i++ {
		batch = append(batch, Record{Seq: i, JSON: AppendJSON(nil, line(i, text))})
		if len(batch) == cap(batch) {
			s.AppendRecords("r", "s", batch)
			batch = batch[:0]
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	// The ring holds 65,536 lines of ~150 bytes (~10 MiB); the whole log is ~150 MiB.
	if grown > 40<<20 {
		t.Fatalf("heap grew by %d MiB for a 1,000,000-line step", grown>>20)
	}
	t.Logf("heap growth for 1,000,000 lines: %.1f MiB", float64(grown)/(1<<20))
	got, _ := readAll(t, s, "r", "s", 999_000, 64<<10)
	if len(got) != 1000 || got[999].Seq != 1_000_000 {
		t.Fatalf("tail read %d lines", len(got))
	}
}

// Ensure the fast validity check of canonical lines agrees with encoding/json: whatever it
// accepts is valid JSON, and malformed canonical-looking lines are rejected by ParseRecord.
func TestCanonicalValidAgreesWithJSON(t *testing.T) {
	good := AppendJSON(nil, Line{Seq: 3, TS: time.Unix(1, 5), Stream: Stdout, Text: "a\"b\\c\x01\x1b[1m é", Partial: true})
	if !canonicalValid(good) {
		t.Fatalf("canonical line rejected: %s", good)
	}
	bad := []string{
		`{"seq":3,"ts":"x","stream":"stdout","text":"a"}`,
		`{"seq":3,"ts":"2026","stream":"stdout","text":"a\q"}`,
		`{"seq":3,"ts":"2026","stream":"stdout","text":"a` + "\x01" + `"}`,
		`{"seq":3,"ts":"2026","stream":"stdout","text":"a"}}`,
		`{"seq":3,"ts":"2026","stream":"stdout","text":"a","x":1}`,
		`{"seq":3,"ts":"2026","stream":"stdout","text":"\u12"}`,
	}
	for _, b := range bad {
		if canonicalValid([]byte(b)) && !json.Valid([]byte(b)) {
			t.Errorf("accepted invalid JSON %s", b)
		}
		rec, err := ParseRecord([]byte(b))
		if err == nil && !json.Valid(rec.JSON) {
			t.Errorf("ParseRecord(%s) stored invalid JSON %s", b, rec.JSON)
		}
	}
	f := func(seq uint32, text string, partial bool) bool {
		b := AppendJSON(nil, Line{Seq: int64(seq) + 1, TS: time.Unix(int64(seq), 0), Stream: Stderr, Text: text, Partial: partial})
		return canonicalValid(b) && json.Valid(b)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

// Ensure the byte-slice encoder produces exactly what AppendJSON does.
func TestAppendJSONBytesMatches(t *testing.T) {
	f := func(seq uint32, text []byte, partial bool) bool {
		ts := time.Unix(int64(seq), int64(seq)*7)
		a := AppendJSON(nil, Line{Seq: int64(seq), TS: ts, Stream: Stdout, Text: string(text), Partial: partial})
		b := AppendJSONBytes(nil, int64(seq), ts, Stdout, text, partial)
		return bytes.Equal(a, b)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
	if !f(1, []byte("bad \xff\xfe \x00 \x1b[0m \"q\" é"), true) {
		t.Fatal("special bytes differ")
	}
}

// Ensure finished steps beyond MaxFinished are dropped from memory once archived, and are read
// back from the archive, whole, when asked for again.
func TestFinishedStepsUnloadAndReload(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{SpoolDir: t.TempDir(), Archive: StoreArchive{Store: st}, MaxFinished: 2})
	defer s.Close()
	for i := 0; i < 4; i++ {
		step := fmt.Sprint("s", i)
		writeArchive(t, st, "r", step, 300)
		for seq := int64(1); seq <= 300; seq++ {
			s.Append("r", step, []Line{line(seq, fmt.Sprintf("archived %d", seq))})
		}
		s.SetEnd("r", step, End{FinalSeq: 300})
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Steps("r")) > 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Steps("r"); len(got) != 2 || got[0] != "s2" {
		t.Fatalf("loaded steps after finishing 4 with MaxFinished 2: %v", got)
	}
	got, end := readAll(t, s, "r", "s0", 0, 4096)
	if len(got) != 300 || end == nil || got[299].Text != "archived 300" {
		t.Fatalf("reloaded s0: %d lines, end %+v", len(got), end)
	}
}
