package logstream

import "sort"

// ring holds a step's most recent records in memory, as the chunks they were appended in: a push
// batch of a thousand lines is one chunk that shares the batch's parsed records, so appending
// and evicting cost per batch, not per line, and no record is copied on the way in. Small appends
// (a line at a time) are copied into chunks the ring owns, so a slow step does not make one
// chunk per line.
type ring struct {
	chunks []ringChunk // oldest first; the slice slides forward through its array
	n      int         // records held
	bytes  int         // JSON bytes held
}

type ringChunk struct {
	recs  []Record // consecutive seqs
	bytes int
	own   bool // recs' array was allocated by the ring: records may be appended to it
}

// ownChunk is the capacity of a chunk the ring allocates for small appends.
const ownChunk = 256

// smallSpan is the largest append copied into an owned chunk rather than kept as its own chunk.
const smallSpan = 16

// push appends records whose seqs follow the ring's last; span is kept, not copied, unless small.
func (r *ring) push(span []Record) {
	if len(span) == 0 {
		return
	}
	b := 0
	for _, rec := range span {
		b += len(rec.JSON)
	}
	r.n += len(span)
	r.bytes += b
	if len(span) <= smallSpan {
		if k := len(r.chunks) - 1; k >= 0 && r.chunks[k].own && cap(r.chunks[k].recs)-len(r.chunks[k].recs) >= len(span) {
			r.chunks[k].recs = append(r.chunks[k].recs, span...)
			r.chunks[k].bytes += b
			return
		}
		recs := append(make([]Record, 0, ownChunk), span...)
		r.addChunk(ringChunk{recs: recs, bytes: b, own: true})
		return
	}
	r.addChunk(ringChunk{recs: span, bytes: b})
}

func (r *ring) addChunk(c ringChunk) {
	if len(r.chunks) == cap(r.chunks) {
		// Slide to a fresh array of twice the live chunks (the evicted ones are dropped).
		chunks := make([]ringChunk, len(r.chunks), 2*len(r.chunks)+8)
		copy(chunks, r.chunks)
		r.chunks = chunks
	}
	r.chunks = append(r.chunks, c)
}

// trim evicts the oldest records while more than maxLines or maxBytes are held, keeping at least
// one: exactly what evicting record by record would keep, but whole chunks at a time.
func (r *ring) trim(maxLines, maxBytes int) {
	for r.n > 1 && (r.n > maxLines || r.bytes > maxBytes) {
		c := &r.chunks[0]
		if len(r.chunks) > 1 && (r.n-len(c.recs) >= maxLines || r.bytes-c.bytes >= maxBytes) {
			// Even without this chunk the ring is at a limit, so every record of it would go.
			r.n -= len(c.recs)
			r.bytes -= c.bytes
			*c = ringChunk{} // let the batch's memory go
			r.chunks = r.chunks[1:]
			continue
		}
		drop := 0
		for r.n > 1 && (r.n > maxLines || r.bytes > maxBytes) && drop < len(c.recs) {
			l := len(c.recs[drop].JSON)
			r.n--
			r.bytes -= l
			c.bytes -= l
			drop++
		}
		c.recs = c.recs[drop:]
		if len(c.recs) == 0 {
			*c = ringChunk{}
			r.chunks = r.chunks[1:]
		}
	}
}

// keepLast keeps only the last k records, in one fresh chunk (a finished step's ring shrinks so
// finished steps do not pile up batches in memory).
func (r *ring) keepLast(k int) {
	if r.n <= k {
		return
	}
	recs := r.from(r.n-k, 1<<62)
	*r = ring{}
	r.push(recs)
	if k > smallSpan {
		r.chunks[0].own = true // from made a fresh array
	}
}

// from returns the records from index i on (0 is the oldest held), at most maxBytes of JSON but
// at least one record. Records inside one chunk are returned without copying (with the capacity
// clipped): the ring never writes to an index it has handed out, it only appends past it or drops
// the chunk. Records spanning chunks are copied into one slice of the exact size.
func (r *ring) from(i, maxBytes int) []Record {
	if i < 0 || i >= r.n {
		return nil
	}
	// Chunks hold consecutive seqs: find the chunk holding index i by its first seq.
	seq := r.chunks[0].recs[0].Seq + int64(i)
	k0 := sort.Search(len(r.chunks), func(k int) bool { return r.chunks[k].recs[0].Seq > seq }) - 1
	j0 := int(seq - r.chunks[k0].recs[0].Seq)
	// Find the end: chunk k1, index j1 (exclusive), and the count.
	k1, j1, count, n := k0, j0, 0, 0
walk:
	for ; k1 < len(r.chunks); k1, j1 = k1+1, 0 {
		recs := r.chunks[k1].recs
		for j1 < len(recs) {
			if count > 0 && n+len(recs[j1].JSON) > maxBytes {
				break walk
			}
			n += len(recs[j1].JSON)
			count++
			j1++
		}
	}
	if k1 == len(r.chunks) || j1 == 0 {
		// Ended at a chunk's end (or the ring's): that chunk is the last one read.
		k1, j1 = k1-1, len(r.chunks[k1-1].recs)
	}
	if k1 == k0 {
		return r.chunks[k0].recs[j0:j1:j1]
	}
	out := make([]Record, 0, count)
	out = append(out, r.chunks[k0].recs[j0:]...)
	for k := k0 + 1; k < k1; k++ {
		out = append(out, r.chunks[k].recs...)
	}
	return append(out, r.chunks[k1].recs[:j1]...)
}
