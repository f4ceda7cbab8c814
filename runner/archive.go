package runner

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/storage"
)

// Segment cadence: a segment is uploaded every segmentEvery, or sooner once segmentBytes are
// waiting, so a service that cannot receive pushes can tail the log from the object store about a
// second behind. One segment holds at most segmentMax bytes. Segments are the fallback of the push
// path: while pushes are acknowledged they are not written (the service has every line, and a
// flood of output does not cost a second copy); from the first moment the push path is missing or
// falls behind, every line from seq 1 on is uploaded, to the end of the step.
const (
	segmentEvery = time.Second
	segmentBytes = 256 << 10
	segmentMax   = 4 << 20
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

	store storage.Store
	// pushing reports whether the push path is healthy; nil means there is none.
	pushing    func() bool
	segmenting bool
	segSeq     int64 // last seq uploaded in a segment
	segOff     int64 // offset in log.ndjson after it

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

// run compresses and uploads segments until stop is closed.
func (a *logArchive) run(ctx context.Context) {
	defer close(a.done)
	tick := time.NewTicker(segmentEvery)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			a.cycle(ctx)
		case <-a.wake:
			if _, off := a.src.flushed(); off-a.segOff >= segmentBytes {
				a.cycle(ctx)
			}
		}
	}
}

// cycle uploads new lines as segments.
func (a *logArchive) cycle(ctx context.Context) {
	if !a.segmenting {
		if a.pushing != nil && a.pushing() {
			return
		}
		a.segmenting = true
	}
	_, end := a.src.flushed()
	store := a.openStore(ctx)
	if store == nil {
		return
	}
	for a.segOff < end {
		n := min(end-a.segOff, segmentMax)
		buf := make([]byte, n)
		if _, err := a.nd.ReadAt(buf, a.segOff); err != nil && err != io.EOF {
			return
		}
		cut := bytes.LastIndexByte(buf, '\n')
		if cut < 0 {
			return
		}
		buf = buf[:cut+1]
		lines := int64(bytes.Count(buf, []byte{'\n'}))
		name := logstream.SegmentName(a.segSeq+1, a.segSeq+lines)
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := store.Put(uctx, a.key(name), bytes.NewReader(buf), int64(len(buf)))
		cancel()
		if err != nil {
			// The store is unreachable for now: the next cycle retries from the same place, with
			// a bigger segment.
			return
		}
		a.segSeq += lines
		a.segOff += int64(len(buf))
	}
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
	// The segments are redundant once the manifest is there; a store that can delete drops them.
	if d, ok := store.(interface {
		Delete(ctx context.Context, key string) error
	}); ok {
		infos, err := store.List(ctx, a.key(logstream.SegmentsDir)+"/")
		if err == nil {
			for _, in := range infos {
				if strings.HasSuffix(path.Base(in.Key), ".ndjson") {
					d.Delete(ctx, in.Key)
				}
			}
		}
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
