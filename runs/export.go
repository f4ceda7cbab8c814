package runs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/kfbridge/kfbridge/kfp/argo"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/kfp/ir"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage"
)

// Compile targets.
const (
	FormatArgo  = "argo"   // KFP 1.x: an Argo Workflow package
	FormatKFPv2 = "kfp-v2" // KFP 2.x: IR PipelineSpec plus the Kubernetes platform spec
)

// runnerURLTTL is how long the presigned URL of the runner binary in an IR package stays valid.
// SigV4 allows at most 7 days, so an exported IR package must be run within a week (a submit
// from kfbridge presigns afresh every time).
const runnerURLTTL = 7 * 24 * time.Hour

// CompileConfig configures Compile.
type CompileConfig struct {
	Format string
	// Root is the directory node files are resolved against.
	Root string
	// Store receives the archives and (for kfp-v2) the runner binary. With NoUpload it is not
	// touched and may be nil: content hashes are computed, nothing is uploaded, and the package
	// runs only once the archives are in the bucket.
	Store    storage.Store
	NoUpload bool
	// Endpoint, Bucket and Region locate the store as the pods reach it; Prefix is the object
	// prefix.
	Endpoint, Bucket, Region, Prefix string
	// RunnerImage is the image with kfbridge-step (Argo init container).
	RunnerImage string
	// RunnerBinary is the path of a linux kfbridge-step to upload for kfp-v2 packages.
	RunnerBinary string
	// Credentials, Images: see compile.Options.
	Credentials compile.Credentials
	Images      map[string]compile.Image
	// RunID fixes the run directory; empty leaves the target's run placeholder (exports).
	RunID string
	// Archives, if set, are used instead of packaging again (a submit has packaged already).
	Archives map[string]Archive
	// Progress receives packaging progress.
	Progress func(Progress)
	Clock    func() time.Time
}

// Compile packages a pipeline's nodes into the store (unless cfg.Archives are given or NoUpload)
// and compiles it for KFP. The output never contains a credential: pods get object-store keys
// from a Kubernetes Secret reference or IRSA.
func Compile(ctx context.Context, p *pipeline.Pipeline, cfg CompileConfig) ([]byte, map[string]Archive, error) {
	if cfg.Format != FormatArgo && cfg.Format != FormatKFPv2 {
		return nil, nil, fmt.Errorf("%w: format %q: want %q or %q", ErrInvalid, cfg.Format, FormatArgo, FormatKFPv2)
	}
	archives := cfg.Archives
	if archives == nil {
		store := cfg.Store
		if cfg.NoUpload {
			store = hashOnly{}
		}
		if store == nil {
			return nil, nil, errors.New("compile: no object store to upload archives to")
		}
		var err error
		archives, err = Package(ctx, store, cfg.Prefix, cfg.Root, p, PackageOptions{Progress: cfg.Progress})
		if err != nil {
			return nil, nil, err
		}
	}
	opts := compile.Options{
		RunnerImage: cfg.RunnerImage,
		Endpoint:    cfg.Endpoint, Bucket: cfg.Bucket, Prefix: cfg.Prefix, Region: cfg.Region,
		RunID:       cfg.RunID,
		ArchiveKeys: map[string]string{},
		Credentials: cfg.Credentials,
		Images:      cfg.Images,
		Clock:       cfg.Clock,
	}
	if cfg.RunID != "" {
		opts.RunDir = storage.RunDir(cfg.Prefix, cfg.RunID)
	}
	for id, a := range archives {
		opts.ArchiveKeys[id] = a.Key
	}
	var out []byte
	var err error
	switch cfg.Format {
	case FormatArgo:
		out, err = argo.Compile(p, opts)
	case FormatKFPv2:
		if cfg.NoUpload {
			// Without a store the runner cannot be delivered; the package still shows what would
			// run, and names the placeholder it needs.
			opts.RunnerURL, opts.RunnerSHA256 = "https://runner-not-uploaded.invalid/kfbridge-step", runnerDigest(cfg.RunnerBinary)
		} else {
			opts.RunnerURL, opts.RunnerSHA256, err = uploadRunner(ctx, cfg.Store, cfg.Prefix, cfg.RunnerBinary)
		}
		if err == nil {
			out, err = ir.Compile(p, opts)
		}
	}
	if err != nil {
		if errors.Is(err, compile.ErrInvalid) {
			return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return nil, nil, err
	}
	return out, archives, nil
}

// runnerDigest is the sha256 of the runner binary, or of nothing when there is none.
func runnerDigest(bin string) string {
	h := sha256.New()
	if f, err := os.Open(bin); err == nil {
		io.Copy(h, f)
		f.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// uploadRunner puts the kfbridge-step binary into the store under a content-addressed key (once)
// and returns a presigned URL for the steps to download it, with its sha256 for them to check.
func uploadRunner(ctx context.Context, store storage.Store, prefix, bin string) (string, string, error) {
	ps, ok := store.(storage.Presigner)
	if !ok {
		return "", "", fmt.Errorf("%w: KFP v2 packages need an S3 store to deliver kfbridge-step (have %s)", ErrInvalid, store.Location())
	}
	if bin == "" {
		return "", "", errors.New("kfp-v2: no kfbridge-step binary to deliver (build it: go build -o bin/ ./cmd/...)")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", fmt.Errorf("kfp-v2: read runner binary: %w", err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	key := path.Join(prefix, "runner", "kfbridge-step-"+digest[:20])
	if _, err := store.Stat(ctx, key); errors.Is(err, storage.ErrNotExist) {
		if err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			return "", "", fmt.Errorf("kfp-v2: upload runner binary: %w", err)
		}
	} else if err != nil {
		return "", "", fmt.Errorf("kfp-v2: check runner binary: %w", err)
	}
	u, err := ps.Presign(ctx, key, runnerURLTTL)
	if err != nil {
		return "", "", fmt.Errorf("kfp-v2: presign runner binary: %w", err)
	}
	return u, digest, nil
}

// hashOnly is a store that holds nothing and accepts everything: packaging against it computes the
// content-addressed keys without uploading (export --no-upload).
type hashOnly struct{}

func (hashOnly) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (hashOnly) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
}
func (hashOnly) Stat(ctx context.Context, key string) (storage.Info, error) {
	return storage.Info{}, fmt.Errorf("%s: %w", key, storage.ErrNotExist)
}
func (hashOnly) List(ctx context.Context, prefix string) ([]storage.Info, error) { return nil, nil }
func (hashOnly) Location() string                                                { return "(not uploaded)" }
