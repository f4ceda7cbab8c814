package logstream

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRingMatchesPerRecordModel appends random spans (single lines and batches) with random
// limits and checks the chunked ring against the plain model it replaces — a slice of records
// evicted one at a time — after every operation: same records held, same byte count, and from()
// returns the same records under every byte budget.
func TestRingMatchesPerRecordModel(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
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
			for i := range span {
				seq++
				span[i] = Record{Seq: seq, JSON: []byte(strings.Repeat("x", 1+rnd.IntN(200)))}
			}
			r.push(span)
			model = append(model, span...)
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
				got := r.from(i, budget)
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
	}
}
