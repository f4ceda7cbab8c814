package logstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// spoolIndexEvery is how many lines share one index entry: a read seeks to the entry at or before
// its seq and skips at most this many lines, while the index of a 1,000,000-line step stays at
// ~4,000 offsets.
const spoolIndexEvery = 256

// spool is a step's whole log on local disk, as NDJSON records in seq order. Memory holds only a
// sparse offset index, so a step of any length costs the same memory; the ring in front of it
// serves live viewers without touching the disk. Writes and reads are serialised by the step's
// lock (writes) and use positional reads (reads), so readers never block the writer for long.
type spool struct {
	f    *os.File
	w    *bufio.Writer
	size int64   // bytes written and flushed: readable
	off  int64   // bytes written, including those still buffered
	idx  []int64 // idx[k] is the offset of seq k*spoolIndexEvery+1
	last int64   // highest seq written
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "step-*.ndjson")
	if err != nil {
		return nil, fmt.Errorf("create log spool: %w", err)
	}
	// The file is only ours: unlinking it at once means nothing is left behind if the process
	// dies, and the open descriptor keeps it readable.
	os.Remove(f.Name())
	return &spool{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// add appends a record; the caller holds the step's lock and calls flush after a batch.
func (sp *spool) add(r Record) error {
	if (r.Seq-1)%spoolIndexEvery == 0 {
		sp.idx = append(sp.idx, sp.off)
	}
	sp.w.Write(r.JSON)
	err := sp.w.WriteByte('\n')
	sp.off += int64(len(r.JSON)) + 1
	sp.last = r.Seq
	return err
}

// addRaw appends records given with their bytes as stored: raw is every record's JSON followed by
// a newline. A whole push batch thus goes to the file in one write, without copying it through
// the buffer.
func (sp *spool) addRaw(recs []Record, raw []byte) error {
	off := sp.off
	for _, r := range recs {
		if (r.Seq-1)%spoolIndexEvery == 0 {
			sp.idx = append(sp.idx, off)
		}
		off += int64(len(r.JSON)) + 1
	}
	_, err := sp.w.Write(raw)
	sp.off += int64(len(raw))
	if len(recs) > 0 {
		sp.last = recs[len(recs)-1].Seq
	}
	return err
}

func (sp *spool) flush() error {
	if err := sp.w.Flush(); err != nil {
		return err
	}
	sp.size = sp.off
	return nil
}

// read returns records with seq > after, at most maxBytes of JSON (at least one record), from
// the first size bytes of the spool. It takes no lock: the bytes below size are immutable.
func (sp *spool) read(idx []int64, size int64, after int64, maxBytes int) ([]Record, error) {
	k := int(after / spoolIndexEvery)
	if k >= len(idx) {
		return nil, nil
	}
	seq := int64(k) * spoolIndexEvery // seq of the record before idx[k]
	br := bufio.NewReaderSize(io.NewSectionReader(sp.f, idx[k], size-idx[k]), 64<<10)
	var out []Record
	n := 0
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			seq++
			if seq > after {
				out = append(out, Record{Seq: seq, JSON: line})
				n += len(line)
				if n >= maxBytes {
					return out, nil
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read log spool: %w", err)
		}
	}
}

// readLine returns the next line without its newline, in a fresh slice.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := bytes.Clone(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	} else {
		line = bytes.Clone(line)
	}
	return bytes.TrimSuffix(line, []byte{'\n'}), err
}

func (sp *spool) close() { sp.f.Close() }
