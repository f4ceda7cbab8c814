package runs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage"
)

// Packaging phases reported in Progress.Phase.
const (
	PhasePackaging    = "packaging"    // the archive is being built (Bytes/Files of the input so far)
	PhaseUploading    = "uploading"    // the archive is being uploaded (Bytes of the archive so far)
	PhaseDone         = "done"         // the archive was uploaded
	PhaseDeduplicated = "deduplicated" // an identical archive was already in the store; nothing uploaded
)

// Archive is a node's dependency archive in the store.
type Archive struct {
	NodeID string `json:"node_id"`
	// Key is the bucket-relative, content-addressed key (storage.ArchiveKey).
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	// Size is the archive's size in bytes (compressed).
	Size int64 `json:"size"`
	// Files is the number of files in the archive.
	Files int `json:"files"`
	// Uploaded is false when an identical archive already existed and nothing was uploaded.
	Uploaded bool `json:"uploaded"`
}

// Progress is one packaging progress report for a node.
type Progress struct {
	NodeID string `json:"node_id"`
	Label  string `json:"label,omitempty"`
	Phase  string `json:"phase"`
	// Files and TotalFiles count the node's input files (archived so far / in total).
	Files      int `json:"files"`
	TotalFiles int `json:"total_files"`
	// Bytes and TotalBytes are input bytes while packaging and archive bytes while uploading.
	Bytes      int64 `json:"bytes"`
	TotalBytes int64 `json:"total_bytes"`
	// Key is the archive's key once it is known.
	Key string `json:"key,omitempty"`
}

// PackageOptions tune Package.
type PackageOptions struct {
	// Progress, if set, receives progress reports. Calls are serialized (never concurrent) and made
	// at phase changes and at most every ProgressInterval per node in between.
	Progress func(Progress)
	// ProgressInterval is the minimum time between two reports of the same phase of a node;
	// 0 means 100 ms.
	ProgressInterval time.Duration
	// Concurrency bounds how many nodes are packaged and uploaded at once; 0 means GOMAXPROCS.
	Concurrency int
	// TempDir holds archives while they are built; "" means os.TempDir().
	TempDir string
}

// archiveIndexEntry is the content of an archive index object (storage.ArchiveIndexKey).
type archiveIndexEntry struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Files  int    `json:"files"`
}

// Package builds the dependency archive of every generic node of p (files from
// pipeline.NodeFiles below the workspace root) and makes sure each is in the store under its
// content-addressed key. Unchanged nodes cost a hash of their files and two small requests: the
// tree digest finds the archive through its index entry, and nothing is compressed or uploaded.
// Nodes are processed concurrently. An archive is uploaded to its final key only once it is
// complete, and object PUTs are atomic, so after an error no partial archive is visible. The error
// names the node. The result maps node ID to Archive.
func Package(ctx context.Context, store storage.Store, prefix, root string, p *pipeline.Pipeline, opts PackageOptions) (map[string]Archive, error) {
	if store == nil || p == nil {
		return nil, errors.New("package: no store or pipeline")
	}
	workers := opts.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	rep := &pkgReporter{fn: opts.Progress, every: opts.ProgressInterval}
	if rep.every <= 0 {
		rep.every = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		mu       sync.Mutex
		out      = map[string]Archive{}
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, workers)
	)
	for _, n := range p.Nodes {
		if n.Kind == "" {
			continue // custom components have no files; validation reports unsupported nodes
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			a, err := packageNode(ctx, store, prefix, root, n, opts.TempDir, rep)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("package node %s: %w", pkgNodeName(n), err)
					cancel(firstErr) // stop the other nodes' work early
				}
				return
			}
			out[n.ID] = a
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("package: %w", context.Cause(ctx))
	}
	return out, nil
}

func pkgNodeName(n *pipeline.Node) string {
	if n.Label != "" && n.Label != n.ID {
		return fmt.Sprintf("%q (%s)", n.Label, n.ID)
	}
	return n.ID
}

func packageNode(ctx context.Context, store storage.Store, prefix, root string, n *pipeline.Node, tmpDir string, rep *pkgReporter) (Archive, error) {
	relDir, files, err := pipeline.NodeFiles(root, n)
	if err != nil {
		return Archive{}, err
	}
	dir := filepath.Join(root, filepath.FromSlash(relDir))
	var total int64
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return Archive{}, err
		}
		total += st.Size()
	}
	pr := Progress{NodeID: n.ID, Label: n.Label, Phase: PhasePackaging, TotalFiles: len(files), TotalBytes: total}
	rep.report(pr, true)
	stem := strings.TrimSuffix(path.Base(n.Filename), path.Ext(n.Filename))

	// Fast path: the same input tree was packaged before and its archive is still in the store.
	digest, err := storage.TreeDigest(ctx, dir, files)
	if err != nil {
		return Archive{}, err
	}
	indexKey := storage.ArchiveIndexKey(prefix, digest)
	if e, ok := lookupArchiveIndex(ctx, store, indexKey); ok {
		if info, err := store.Stat(ctx, e.Key); err == nil && info.Size == e.Size {
			pr.Phase, pr.Files, pr.Bytes, pr.Key = PhaseDeduplicated, len(files), total, e.Key
			rep.report(pr, true)
			return Archive{NodeID: n.ID, Key: e.Key, SHA256: e.SHA256, Size: e.Size, Files: e.Files}, nil
		}
	}

	// Build the archive in a temporary file.
	if tmpDir == "" {
		tmpDir = os.TempDir()
	}
	tmp, err := os.CreateTemp(tmpDir, "kfbridge-archive-*.tar.gz")
	if err != nil {
		return Archive{}, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	sum, err := storage.WriteArchiveProgress(pkgCtxWriter{ctx, tmp}, dir, files, func(nf int, nb int64) {
		pr.Files, pr.Bytes = nf, nb
		rep.report(pr, false)
	})
	if err != nil {
		return Archive{}, err
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err != nil {
		return Archive{}, err
	}
	key := storage.ArchiveKey(prefix, stem, sum)
	a := Archive{NodeID: n.ID, Key: key, SHA256: sum, Size: size, Files: len(files)}
	entry := archiveIndexEntry{Key: key, SHA256: sum, Size: size, Files: len(files)}

	// Content-addressed: an object at this key with this size is this archive.
	if info, err := store.Stat(ctx, key); err == nil && info.Size == size {
		writeArchiveIndex(ctx, store, indexKey, entry)
		pr.Phase, pr.Key = PhaseDeduplicated, key
		rep.report(pr, true)
		return a, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotExist) {
		return Archive{}, err
	}

	pr.Phase, pr.Key, pr.Bytes, pr.TotalBytes = PhaseUploading, key, 0, size
	rep.report(pr, true)
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Archive{}, err
	}
	body := &pkgUploadFile{File: tmp, size: size, onRead: func(done int64) {
		p := pr
		p.Bytes = done
		rep.report(p, false)
	}}
	if err := store.Put(ctx, key, body, size); err != nil {
		return Archive{}, err
	}
	// The index is written after the archive, so an index entry never names a missing archive.
	writeArchiveIndex(ctx, store, indexKey, entry)
	a.Uploaded = true
	pr.Phase, pr.Bytes = PhaseDone, size
	rep.report(pr, true)
	return a, nil
}

func lookupArchiveIndex(ctx context.Context, store storage.Store, key string) (archiveIndexEntry, bool) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return archiveIndexEntry{}, false // missing or unreadable: fall back to packaging
	}
	defer rc.Close()
	var e archiveIndexEntry
	if err := json.NewDecoder(io.LimitReader(rc, 64<<10)).Decode(&e); err != nil || e.Key == "" {
		return archiveIndexEntry{}, false
	}
	return e, true
}

// writeArchiveIndex records the tree digest → archive mapping. A failure only costs a repackaging next
// time, so it is not an error of the submission.
func writeArchiveIndex(ctx context.Context, store storage.Store, key string, e archiveIndexEntry) {
	b, _ := json.Marshal(e)
	_ = store.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// pkgReporter serializes progress callbacks and rate-limits them per node.
type pkgReporter struct {
	fn    func(Progress)
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

func (r *pkgReporter) report(p Progress, force bool) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	now := time.Now()
	if !force && now.Sub(r.last[p.NodeID]) < r.every {
		return
	}
	r.last[p.NodeID] = now
	r.fn(p)
}

// pkgCtxWriter stops archiving when the context is canceled.
type pkgCtxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c pkgCtxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// pkgUploadFile reports upload progress. It keeps io.ReaderAt and io.Seeker (but is not an
// *os.File), so the S3 client still uploads parts in parallel straight from the file and can
// rewind for retries.
type pkgUploadFile struct {
	*os.File
	size   int64
	done   atomic.Int64
	onRead func(done int64)
}

func (c *pkgUploadFile) Read(p []byte) (int, error) {
	n, err := c.File.Read(p)
	c.add(n)
	return n, err
}

func (c *pkgUploadFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.File.ReadAt(p, off)
	c.add(n)
	return n, err
}

func (c *pkgUploadFile) add(n int) {
	if n <= 0 {
		return
	}
	// Retries re-read bytes; never report more than the whole archive.
	d := min(c.done.Add(int64(n)), c.size)
	c.onRead(d)
}
