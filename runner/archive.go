package runner

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/storage"
)

// Segment cadence: from seq 1 on, whatever the push path does, a segment is uploaded once
// segmentEvery has passed since the oldest line not yet uploaded, or sooner once segmentBytes are
// waiting (but not sooner than segmentGap after the previous upload); one segment holds at most
// segmentMax bytes. The store therefore always holds the log up to about a second before now, so
// a service that gets no pushes can tail it, and a service restarted after the runner died (no end
// record, no final archive) still serves the step up to then. Only one upload is in flight: while
// it runs, new lines accumulate and go in the next segment, so a store slower than the output gets
// bigger segments, never a slower step.
const (
	segmentEvery = time.Second
	segmentBytes = 256 << 10
	segmentMax   = 4 << 20
	// segmentGap spaces uploads triggered by size: under a flood of output a segment leaves at
	// most every 250 ms and holds what accumulated (split at segmentMax), rather than one object
	// per 256 KiB, whose per-object cost (a file or a PUT each) took CPU from the step.
	segmentGap = 250 * time.Millisecond
	// segmentsDeleteWait bounds the removal of the segments at the end of the step.
	segmentsDeleteWait = 30 * time.Second
)

// logArchive writes a step's log to the object store: NDJSON segments while the step runs, then
// log.txt, log.ndjson.gz and manifest.json (last: its presence means the others are complete).
// log.ndjson.gz is compressed at the end, on every CPU at once (see compressParallel): during the
// step the CPU belongs to the user's code. It opens its own store client so it never shares state
// with the step's file transfers.
type logArchive struct {
	cfg    *config
	getenv func(string) string
	src    *sink
	nd     *os.File // log.ndjson, read with ReadAt
	txt    *os.File // log.txt
	gzPath string
	wake   <-chan struct{}

	store  storage.Store
	segSeq int64  // last seq uploaded in a segment
	segOff int64  // offset in log.ndjson after it
	segBuf []byte // reused for every segment

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newLogArchive(cfg *config, getenv func(string) string, src *sink, dir string, txt, nd *os.File) (*logArchive, error) {
	return &logArchive{cfg: cfg, getenv: getenv, src: src, txt: txt, nd: nd, gzPath: dir + "/log.ndjson.gz",
		wake: src.subscribe(), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

func (a *logArchive) key(name string) string {
	return storage.StepKey(a.cfg.directory, a.cfg.stepID, name)
}

func (a *logArchive) openStore(ctx context.Context) storage.Store {
	if a.store == nil {
		a.store, _ = a.cfg.openStore(ctx, a.getenv)
	}
	return a.store
}

// run uploads segments until stop is closed. It runs apart from the sink, which only signals
// wake: an upload, however slow, never holds up the step's output.
func (a *logArchive) run(ctx context.Context) {
	defer close(a.done)
	// stop also cancels an upload in flight: the final objects make it redundant.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	timer := time.NewTimer(segmentEvery)
	timer.Stop()
	var due, last time.Time // when the next upload is due (zero: none), when the last one started
	schedule := func(at time.Time) {
		if due.IsZero() || at.Before(due) {
			due = at
			timer.Reset(time.Until(at))
		}
	}
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
			_, off := a.src.flushed()
			switch {
			case off == a.segOff:
			case off-a.segOff >= segmentBytes && !failed:
				schedule(last.Add(segmentGap))
			default:
				// The first line waiting sets the deadline; later ones do not push it back.
				schedule(time.Now().Add(segmentEvery))
			}
			continue
		case <-timer.C:
		}
		due, failed = time.Time{}, false
		last = time.Now()
		if !a.cycle(ctx) {
			// The store failed: retry a full period later, with whatever arrives meanwhile.
			failed = true
			schedule(time.Now().Add(segmentEvery))
		} else if _, off := a.src.flushed(); off > a.segOff {
			// Lines that arrived during the upload are at most as old as the upload.
			schedule(last.Add(segmentEvery))
		}
	}
}

// cycle uploads the lines flushed to log.ndjson and not yet uploaded, in segments of at most
// segmentMax bytes. It reports false if an upload failed; the next cycle retries from the same
// line, with whatever arrived since.
func (a *logArchive) cycle(ctx context.Context) bool {
	_, end := a.src.flushed()
	store := a.openStore(ctx)
	if store == nil {
		return false
	}
	for a.segOff < end {
		n := int(min(end-a.segOff, segmentMax))
		if cap(a.segBuf) < n {
			a.segBuf = make([]byte, n)
		}
		buf := a.segBuf[:n]
		if k, _ := a.nd.ReadAt(buf, a.segOff); k < n {
			return false
		}
		cut := bytes.LastIndexByte(buf, '\n')
		if cut < 0 {
			return false
		}
		buf = buf[:cut+1]
		lines := int64(bytes.Count(buf, []byte{'\n'}))
		name := logstream.SegmentName(a.segSeq+1, a.segSeq+lines)
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := store.Put(uctx, a.key(name), bytes.NewReader(buf), int64(len(buf)))
		cancel()
		if err != nil {
			return false
		}
		a.segSeq += lines
		a.segOff += int64(len(buf))
	}
	return true
}

// compressParallel writes the first size bytes of src to dst as gzip: the input is cut into one
// chunk per CPU at line boundaries and each chunk becomes its own gzip member, compressed
// concurrently. Concatenated members are one valid gzip stream (RFC 1952), which gzip.Reader and
// gunzip read as a whole.
func compressParallel(src *os.File, size int64, dst io.Writer) error {
	n := int64(runtime.GOMAXPROCS(0))
	if size < 4<<20 {
		n = 1
	}
	var cuts []int64
	for i := int64(1); i < n; i++ {
		off := size * i / n
		// Move the cut after the next newline so every member holds whole lines.
		buf := make([]byte, 64<<10)
		for {
			k, err := src.ReadAt(buf, off)
			if j := bytes.IndexByte(buf[:k], '\n'); j >= 0 {
				off += int64(j) + 1
				break
			}
			off += int64(k)
			if err != nil || off >= size {
				off = size
				break
			}
		}
		if len(cuts) == 0 || off > cuts[len(cuts)-1] {
			cuts = append(cuts, min(off, size))
		}
	}
	bounds := append(append([]int64{0}, cuts...), size)
	outs := make([]bytes.Buffer, len(bounds)-1)
	errs := make([]error, len(outs))
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			zw, _ := gzip.NewWriterLevel(&outs[i], gzip.BestSpeed)
			if _, err := io.Copy(zw, io.NewSectionReader(src, bounds[i], bounds[i+1]-bounds[i])); err != nil {
				errs[i] = err
				return
			}
			errs[i] = zw.Close()
		}(i)
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			return fmt.Errorf("compress log: %w", errs[i])
		}
		if _, err := outs[i].WriteTo(dst); err != nil {
			return fmt.Errorf("compress log: %w", err)
		}
	}
	return nil
}

// finish stops the segment loop and uploads the final objects. The log must be archived even when
// the step was cancelled, so it uses its own deadline rather than the step's context.
func (a *logArchive) finish(ctx context.Context, m manifest) error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	_, end := a.src.flushed()
	gzFile, err := os.Create(a.gzPath)
	if err != nil {
		return fmt.Errorf("create log archive: %w", err)
	}
	defer gzFile.Close()
	if err := compressParallel(a.nd, end, gzFile); err != nil {
		return err
	}
	store := a.openStore(ctx)
	if store == nil {
		var err error
		if store, err = a.cfg.openStore(ctx, a.getenv); err != nil {
			return fmt.Errorf("open object store: %w", err)
		}
	}
	for _, f := range []struct {
		file *os.File
		name string
	}{{a.txt, logstream.LogTextName}, {gzFile, logstream.LogNDJSONName}} {
		if _, err := f.file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		fi, err := f.file.Stat()
		if err != nil {
			return err
		}
		if err := store.Put(ctx, a.key(f.name), f.file, fi.Size()); err != nil {
			return fmt.Errorf("upload %s: %w", f.name, err)
		}
	}
	b := marshalManifest(m)
	if err := store.Put(ctx, a.key(logstream.ManifestName), bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("upload %s: %w", logstream.ManifestName, err)
	}
	// The segments are redundant once the manifest is there. A long step leaves hundreds, so
	// they go in one batch (one directory removal, or DeleteObjects of 1,000 keys); a failure only
	// leaves them behind, which readers ignore once the manifest exists.
	if d, ok := store.(interface {
		DeletePrefix(ctx context.Context, prefix string) error
	}); ok {
		dctx, cancel := context.WithTimeout(ctx, segmentsDeleteWait)
		d.DeletePrefix(dctx, a.key(logstream.SegmentsDir)+"/")
		cancel()
	}
	return nil
}

// close stops the segment loop if finish was not reached.
func (a *logArchive) close() {
	a.once.Do(func() { close(a.stop) })
}

// logLimit is the log limit of the step: KFBRIDGE_LOG_LIMIT bytes if set (for steps known to be
// chatty, or tests), else defaultLogLimit.
func logLimit(getenv func(string) string) int64 {
	if v := getenv("KFBRIDGE_LOG_LIMIT"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return defaultLogLimit
}
