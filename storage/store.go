// Package storage is kfbridge's object store: a small interface with two implementations, a local
// directory (the embedded default) and S3/MinIO, plus the object-key layout and the dependency
// archives that both the server and the step runner use. Because the runner reads and writes through
// the same interface and keys as the server, a step run locally and a step run in a KFP pod follow
// one code path.
package storage

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"time"
)

// ErrNotExist is returned (wrapped) when an object does not exist.
var ErrNotExist = errors.New("object does not exist")

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is an object store. Keys are slash-separated and relative to the store's root (bucket plus
// optional prefix). Implementations must be safe for concurrent use.
type Store interface {
	// Put stores r under key. size is the length of r, or -1 if unknown.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object at key; the error wraps ErrNotExist if it is missing.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object at key; the error wraps ErrNotExist if it is missing.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Location is a human-readable description of where objects go (for messages and links),
	// e.g. "file:///var/lib/kfbridge/store" or "http://minio:9000/bucket/prefix".
	Location() string
}

// Key layout. A run's objects live under its run directory; dependency archives are content
// addressed and shared by all runs, so an unchanged node is never uploaded twice.
//
//	<prefix>/archives/<stem>-<sha256 hex[:20]>.tar.gz   dependency archive of a node
//	<prefix>/archives/index/<tree digest>.json          which archive a file tree packs into (TreeDigest)
//	<prefix>/runs/<run id>/<output path>                outputs of every step (Elyra's layout)
//	<prefix>/runs/<run id>/.kfbridge/<step id>/…        a step's log.txt, log.ndjson.gz, manifest.json
const (
	archivesDir = "archives"
	runsDir     = "runs"
	stepMetaDir = ".kfbridge"
)

// RunDir is the directory of a run's objects (the bootstrapper's --cos-directory).
func RunDir(prefix, runID string) string { return join(prefix, runsDir, runID) }

// ArchiveKey is the content-addressed key of a dependency archive for a node file with the given
// stem (base name without extension) and the hex sha256 of the archive.
func ArchiveKey(prefix, stem, sum string) string {
	if len(sum) > 20 {
		sum = sum[:20]
	}
	return join(prefix, archivesDir, stem+"-"+sum+".tar.gz")
}

// ArchiveIndexKey is the key of the index entry that maps a node's input tree (TreeDigest) to its
// archive, so an unchanged node is found without compressing it again.
func ArchiveIndexKey(prefix, digest string) string {
	return join(prefix, archivesDir, "index", digest+".json")
}

// OutputKey is the key of a step output at the relative path rel inside the run directory.
func OutputKey(runDir, rel string) string { return join(runDir, rel) }

// StepKey is the key of a kfbridge file (log.txt, manifest.json, …) of one step.
func StepKey(runDir, stepID, name string) string { return join(runDir, stepMetaDir, stepID, name) }

func join(elem ...string) string {
	var parts []string
	for _, e := range elem {
		if e = strings.Trim(e, "/"); e != "" {
			parts = append(parts, e)
		}
	}
	return path.Join(parts...)
}
