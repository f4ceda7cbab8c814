package storage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Parallel gzip.
//
// The input is cut into fixed-size blocks. Each block is deflated on its own goroutine, primed with
// the last 32 KiB of the preceding input as the dictionary, and ended with a sync flush (an empty
// stored block) so it finishes on a byte boundary; the last block is closed normally. Concatenated
// in input order these raw deflate streams form one valid deflate stream, wrapped in a gzip header
// and trailer (CRC-32 and length of the whole input). Because block boundaries depend only on byte
// offsets and each block's output only on its bytes and its dictionary, the output is byte-identical
// for identical input whatever the scheduling or the number of cores.

const (
	pgzipBlockSize = 1 << 20
	pgzipDictSize  = 32 << 10
	// pgzipLevel trades a few percent of size for speed: on the packaging benchmark klauspost's
	// level 5 gives archives about 6 % larger than gzip -6 at several times its per-core speed
	// (docs/benchmarks.md). Changing it changes every archive's bytes: bump ArchiveFormat too.
	pgzipLevel = 5
)

// gzipHeader is a fixed gzip member header: deflate, no flags (no name, no comment), mtime 0,
// no extra flags, OS "unknown". Fixed so archives never depend on when or where they were made.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

type pgzBlock struct {
	in   []byte
	dict []byte
	last bool
	out  bytes.Buffer
	err  error
	done chan struct{}
}

// pgzipWriter is a deterministic, block-parallel gzip writer. Close must always be called; it
// releases the goroutines even after an error.
type pgzipWriter struct {
	w     io.Writer
	level int
	buf   []byte
	dict  []byte
	crc   uint32
	size  uint32 // input length mod 2^32, as gzip's ISIZE
	sem   chan struct{}
	queue chan *pgzBlock

	mu     sync.Mutex
	err    error // first error of the output side
	wdone  chan struct{}
	closed bool
}

func newPgzipWriter(w io.Writer, level int) *pgzipWriter {
	workers := runtime.GOMAXPROCS(0)
	z := &pgzipWriter{
		w:     w,
		level: level,
		buf:   make([]byte, 0, pgzipBlockSize),
		sem:   make(chan struct{}, workers),
		// The queue bounds the memory in flight: at most 2×workers blocks wait to be written.
		queue: make(chan *pgzBlock, 2*workers),
		wdone: make(chan struct{}),
	}
	go z.writeLoop()
	return z
}

// writeLoop writes finished blocks in input order. It exits when the queue is closed.
func (z *pgzipWriter) writeLoop() {
	defer close(z.wdone)
	_, err := z.w.Write(gzipHeader)
	z.setErr(err)
	for b := range z.queue {
		<-b.done
		if z.getErr() != nil {
			continue // keep draining so the producers never block
		}
		if b.err != nil {
			z.setErr(b.err)
			continue
		}
		_, err := z.w.Write(b.out.Bytes())
		z.setErr(err)
	}
}

func (z *pgzipWriter) setErr(err error) {
	if err == nil {
		return
	}
	z.mu.Lock()
	if z.err == nil {
		z.err = err
	}
	z.mu.Unlock()
}

func (z *pgzipWriter) getErr() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

// Write implements io.Writer.
func (z *pgzipWriter) Write(p []byte) (int, error) {
	if err := z.getErr(); err != nil {
		return 0, err
	}
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
	for len(p) > 0 {
		k := min(len(p), pgzipBlockSize-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == pgzipBlockSize {
			z.dispatch(false)
		}
	}
	return n, nil
}

// dispatch hands the current block to a compressor goroutine and queues it for writing.
func (z *pgzipWriter) dispatch(last bool) {
	b := &pgzBlock{in: z.buf, dict: z.dict, last: last, done: make(chan struct{})}
	if len(z.buf) >= pgzipDictSize {
		z.dict = z.buf[len(z.buf)-pgzipDictSize:]
	} else {
		// A short block can only be the last one, so no later block needs a dictionary.
		z.dict = nil
	}
	z.buf = make([]byte, 0, pgzipBlockSize)
	z.sem <- struct{}{}
	go func() {
		defer func() { <-z.sem; close(b.done) }()
		b.out.Grow(len(b.in)/2 + 64)
		fw, err := flate.NewWriterDict(&b.out, z.level, b.dict)
		if err != nil {
			b.err = err
			return
		}
		if _, err := fw.Write(b.in); err != nil {
			b.err = err
			return
		}
		if b.last {
			b.err = fw.Close()
		} else {
			b.err = fw.Flush()
		}
		b.in, b.dict = nil, nil
	}()
	z.queue <- b
}

// Close flushes the last block and writes the gzip trailer. It is safe to call more than once.
func (z *pgzipWriter) Close() error {
	if z.closed {
		return z.getErr()
	}
	z.closed = true
	z.dispatch(true)
	close(z.queue)
	<-z.wdone
	if err := z.getErr(); err != nil {
		return err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[0:], z.crc)
	binary.LittleEndian.PutUint32(trailer[4:], z.size)
	_, err := z.w.Write(trailer[:])
	z.setErr(err)
	return err
}
