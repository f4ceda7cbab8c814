package logstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestRingMatchesPerRecordModel appends random spans (single lines and batches, each in a pooled
// body of its own) with random limits and checks the chunked ring against the plain model it
// replaces — a slice of records evicted one at a time — after every operation: same records held,
// same byte count, and each() gives the same records under every byte budget. Recycled bodies are
// poisoned, so a record still pointing into one would differ from the model; at the end every
// body has been released.
func TestRingMatchesPerRecordModel(t *testing.T) {
	poisonBodies = true
	defer func() { poisonBodies = false }()
	rnd := rand.New(rand.NewPCG(7, 8))
	var bodies []*pooledBody
	for round := 0; round < 200; round++ {
		maxLines, maxBytes := 1+rnd.IntN(300), 1+rnd.IntN(20000)
		var r ring
		var model []Record
		modelBytes := 0
		seq := int64(0)
		for op := 0; op < 60; op++ {
			n := 1 + rnd.IntN(4)
			if rnd.IntN(3) == 0 {
				n = smallSpan + 1 + rnd.IntN(100)
			}
			span := make([]Record, n)
			var modelSpan []Record
			buf := GetBody(64 << 10)[:0]
			for i := range span {
				seq++
				text := fmt.Sprintf("%d:%s", seq, strings.Repeat("x", rnd.IntN(200)))
				at := len(buf)
				buf = append(buf, text...) // within the body's capacity
				span[i] = Record{Seq: seq, JSON: buf[at:len(buf):len(buf)]}
				modelSpan = append(modelSpan, Record{Seq: seq, JSON: []byte(text)})
			}
			body := &pooledBody{buf: buf}
			bodies = append(bodies, body)
			r.push(span, body)
			if body.refs == 0 {
				putBody(body.buf) // copied: the caller recycles it at once, as appendRecords does
				body.buf = nil
			}
			model = append(model, modelSpan...)
			for _, rec := range span {
				modelBytes += len(rec.JSON)
			}
			r.trim(maxLines, maxBytes)
			for len(model) > 1 && (len(model) > maxLines || modelBytes > maxBytes) {
				modelBytes -= len(model[0].JSON)
				model = model[1:]
			}
			if rnd.IntN(20) == 0 {
				k := rnd.IntN(50)
				r.keepLast(k)
				if len(model) > k {
					for _, rec := range model[:len(model)-k] {
						modelBytes -= len(rec.JSON)
					}
					model = model[len(model)-k:]
				}
			}
			if r.n != len(model) || r.bytes != modelBytes {
				t.Fatalf("round %d op %d: ring holds %d records/%d bytes, model %d/%d", round, op, r.n, r.bytes, len(model), modelBytes)
			}
			for _, i := range []int{0, rnd.IntN(len(model) + 1), len(model) - 1, len(model)} {
				budget := rnd.IntN(3000)
				var got []Record
				r.each(i, budget, func(part []Record) { got = copyRecords(got, part) })
				var want []Record
				n := 0
				for j := i; j >= 0 && j < len(model) && (j == i || n+len(model[j].JSON) <= budget); j++ {
					want = append(want, model[j])
					n += len(model[j].JSON)
				}
				if len(got) != len(want) {
					t.Fatalf("round %d op %d: from(%d, %d) gave %d records, want %d", round, op, i, budget, len(got), len(want))
				}
				for j := range got {
					if got[j].Seq != want[j].Seq || string(got[j].JSON) != string(want[j].JSON) {
						t.Fatalf("round %d op %d: from(%d) record %d is seq %d, want %d", round, op, i, j, got[j].Seq, want[j].Seq)
					}
				}
			}
		}
		r.reset()
		for i, b := range bodies {
			if b.refs != 0 || b.buf != nil {
				t.Fatalf("round %d: body %d still has %d references after reset", round, i, b.refs)
			}
		}
		bodies = bodies[:0]
	}
}

// TestPooledBodiesReadWhileEvicted appends pooled push bodies while readers read through Read and
// ReadTo concurrently and the ring evicts (and recycles, poisoned) the oldest bodies all the time:
// every line read must be intact — a line read from a recycled body would be '#'s.
func TestPooledBodiesReadWhileEvicted(t *testing.T) {
	poisonBodies = true
	defer func() { poisonBodies = false }()
	s := New(Options{SpoolDir: t.TempDir(), RingLines: 3000, RingBytes: 1 << 20})
	defer s.Close()
	const batches, per = 400, 500
	text := strings.Repeat("t", 150)
	want := func(seq int64) string { return fmt.Sprintf("%d %s", seq, text[:seq%150]) }
	done := make(chan struct{})
	errs := make(chan error, 4)
	reader := func(useReadTo bool) {
		after := int64(0)
		for after < batches*per {
			check := func(recs []Record) {
				for _, rec := range recs {
					l, err := rec.Decode()
					if err != nil || l.Seq != after+1 || l.Text != want(l.Seq) {
						errs <- fmt.Errorf("read %q after %d (%v)", rec.JSON, after, err)
						return
					}
					after = l.Seq
				}
			}
			if useReadTo {
				if _, err := s.ReadTo(context.Background(), "r", "s", after, 64<<10, check); err != nil && err != ErrNoStep {
					errs <- err
					return
				}
			} else {
				c, err := s.Read(context.Background(), "r", "s", after, 64<<10)
				if err != nil && err != ErrNoStep {
					errs <- err
					return
				}
				time.Sleep(50 * time.Microsecond) // hold the records a while: they must stay intact
				check(c.Records)
			}
			select {
			case <-done:
				if after < batches*per && s.LastSeq("r", "s") == batches*per {
					continue
				}
			default:
			}
		}
		errs <- nil
	}
	go reader(true)
	go reader(false)
	ts := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	for b := 0; b < batches; b++ {
		var enc []byte
		for k := int64(1); k <= per; k++ {
			seq := int64(b*per) + k
			enc = AppendJSON(enc, Line{Seq: seq, TS: ts, Stream: Stdout, Text: want(seq)})
			enc = append(enc, '\n')
		}
		body := GetBody(len(enc))
		copy(body, enc)
		if last, err := s.AppendPooled(context.Background(), "r", "s", body); err != nil || last != int64((b+1)*per) {
			t.Fatalf("batch %d: last %d, %v", b, last, err)
		}
	}
	close(done)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
