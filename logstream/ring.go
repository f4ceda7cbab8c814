package logstream

import "sort"

// ring holds a step's most recent records in memory, as the chunks they were appended in: a push
// batch of a thousand lines is one chunk that shares the batch's parsed records, so appending
// and evicting cost per batch, not per line, and no record is copied on the way in. Small appends
// (a line at a time) are copied, JSON included, into chunks the ring owns, so a slow step does
// not make one chunk per line and owned chunks never refer to a push body.
//
// A chunk made from a pooled push body holds a reference to it; when the last chunk referring to
// a body is evicted, the body goes back to the pool. Readers therefore only see ring records
// under the step's lock (see Store.ReadTo), never after it.
type ring struct {
	chunks []ringChunk // oldest first; the slice slides forward through its array
	n      int         // records held
	bytes  int         // JSON bytes held
}

type ringChunk struct {
	recs  []Record // consecutive seqs
	bytes int
	own   bool   // recs and arena were allocated by the ring: small appends go here
	arena []byte // an owned chunk's JSON bytes (fixed capacity, never reallocated)
	body  *pooledBody
}

// pooledBody is a push body the store may recycle once no ring chunk refers to it. refs is
// guarded by the lock of the step the body was appended to.
type pooledBody struct {
	buf  []byte
	refs int
}

const (
	// ownChunk and ownArena size the chunks the ring allocates for small appends.
	ownChunk = 256
	ownArena = 64 << 10
	// smallSpan is the largest append copied into an owned chunk rather than kept as its own
	// chunk.
	smallSpan = 16
)

// push appends records whose seqs follow the ring's last. A large span is kept as it is (with a
// reference to body, which its records' JSON may point into; body may be nil); a small one is
// copied.
func (r *ring) push(span []Record, body *pooledBody) {
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
		r.copyIn(span)
		return
	}
	if body != nil {
		body.refs++
	}
	r.addChunk(ringChunk{recs: span, bytes: b, body: body})
}

// copyIn appends records into owned chunks, JSON included; the caller has counted them in n and
// bytes.
func (r *ring) copyIn(span []Record) {
	for _, rec := range span {
		k := len(r.chunks) - 1
		if k < 0 || !r.chunks[k].own || len(r.chunks[k].recs) == cap(r.chunks[k].recs) ||
			cap(r.chunks[k].arena)-len(r.chunks[k].arena) < len(rec.JSON) {
			r.addChunk(ringChunk{recs: make([]Record, 0, ownChunk), arena: make([]byte, 0, max(ownArena, len(rec.JSON))), own: true})
			k++
		}
		c := &r.chunks[k]
		at := len(c.arena)
		c.arena = append(c.arena, rec.JSON...) // within capacity: the arena never moves
		c.recs = append(c.recs, Record{Seq: rec.Seq, JSON: c.arena[at:len(c.arena):len(c.arena)]})
		c.bytes += len(rec.JSON)
	}
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

// dropFirst removes the oldest chunk, releasing its body.
func (r *ring) dropFirst() {
	release(r.chunks[0].body)
	r.chunks[0] = ringChunk{} // let the batch's memory go
	r.chunks = r.chunks[1:]
}

// release drops one reference to a pooled body and recycles it with the last one.
func release(b *pooledBody) {
	if b == nil {
		return
	}
	if b.refs--; b.refs == 0 {
		putBody(b.buf)
		b.buf = nil
	}
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
			r.dropFirst()
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
			r.dropFirst()
		}
	}
}

// keepLast keeps only the last k records, copied into owned memory (a finished step's ring
// shrinks so finished steps do not pile up batches in memory), and releases every body.
func (r *ring) keepLast(k int) {
	if r.n <= k {
		return
	}
	var keep ring
	r.each(r.n-k, 1<<62, func(recs []Record) {
		for _, rec := range recs {
			keep.n++
			keep.bytes += len(rec.JSON)
		}
		keep.copyIn(recs)
	})
	r.reset()
	*r = keep
}

// reset empties the ring, releasing every body.
func (r *ring) reset() {
	for len(r.chunks) > 0 {
		r.dropFirst()
	}
	*r = ring{}
}

// each calls fn with the records from index i on (0 is the oldest held), at most maxBytes of
// JSON but at least one record, one chunk's part at a time. The records are the ring's own: fn
// must copy what it keeps before the caller releases the step's lock.
func (r *ring) each(i, maxBytes int, fn func([]Record)) {
	if i < 0 || i >= r.n {
		return
	}
	// Chunks hold consecutive seqs: find the chunk holding index i by its first seq.
	seq := r.chunks[0].recs[0].Seq + int64(i)
	k := sort.Search(len(r.chunks), func(k int) bool { return r.chunks[k].recs[0].Seq > seq }) - 1
	j := int(seq - r.chunks[k].recs[0].Seq)
	count, n := 0, 0
	for ; k < len(r.chunks); k, j = k+1, 0 {
		recs := r.chunks[k].recs
		end := j
		for end < len(recs) && (count == 0 || n+len(recs[end].JSON) <= maxBytes) {
			n += len(recs[end].JSON)
			count++
			end++
		}
		if end > j {
			fn(recs[j:end:end])
		}
		if end < len(recs) {
			return
		}
	}
}

// copyRecords returns a copy of records whose JSON lives in one fresh buffer.
func copyRecords(dst []Record, recs []Record) []Record {
	n := 0
	for _, rec := range recs {
		n += len(rec.JSON)
	}
	buf := make([]byte, 0, n)
	for _, rec := range recs {
		at := len(buf)
		buf = append(buf, rec.JSON...)
		dst = append(dst, Record{Seq: rec.Seq, JSON: buf[at:len(buf):len(buf)]})
	}
	return dst
}
