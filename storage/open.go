package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Config selects and configures a store. The same fields come from `kfbridge serve --s3-*` flags on
// the server and from the `--cos-*` flags plus environment in the step runner.
//
// Prefix handling: keys passed to the returned Store are always relative to the bucket root, never
// to Prefix. Callers build keys with the key-layout functions and pass Prefix themselves
// (RunDir(cfg.Prefix, id), ArchiveKey(cfg.Prefix, …)). This keeps one key meaning one object for the
// server, the compilers (which print keys into pod arguments) and the step runner, whatever prefix
// each of them was configured with. Open only validates Prefix.
type Config struct {
	// Endpoint is "file:///abs/dir" for a directory store (objects under dir/Bucket) or
	// "http(s)://host[:port]" for S3/MinIO.
	Endpoint string
	// Bucket is the S3 bucket, or the subdirectory of a file:// endpoint (may be empty there).
	Bucket string
	// Prefix is the object prefix (Elyra's cos_object_prefix); see the type comment.
	Prefix string
	// Region is the S3 region; empty means the server's default (AWS_REGION from Getenv if set).
	Region string
	// AccessKey and SecretKey are static S3 credentials. When AccessKey is empty, credentials come
	// from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), then from IRSA
	// (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), all read through Getenv.
	AccessKey, SecretKey string
	// Getenv reads the environment; nil means no environment at all (library code never calls
	// os.Getenv itself, so tests and the server decide what a store may see).
	Getenv func(string) string
	// MaxRetries bounds the attempts of each S3 request on transient errors (connection resets,
	// 5xx, throttling). 0 means 4; 1 disables retries.
	MaxRetries int
	// PartSize is the multipart part size for uploads of unknown or large size; 0 means 16 MiB.
	PartSize uint64
	// Timeout bounds how long Open waits for the bucket check; 0 means 30 s.
	Timeout time.Duration
}

func (c Config) getenv(k string) string {
	if c.Getenv == nil {
		return ""
	}
	return c.Getenv(k)
}

// Open returns the store described by cfg. For S3 it checks that the bucket exists and creates it
// if it does not, so a misconfiguration surfaces here (at startup or submit) with a readable error
// rather than in the middle of a run.
func Open(ctx context.Context, cfg Config) (Store, error) {
	if strings.HasPrefix(cfg.Prefix, "/") || strings.Contains(cfg.Prefix, "..") || strings.Contains(cfg.Prefix, "\\") {
		return nil, fmt.Errorf("open store: invalid prefix %q: must be a relative slash-separated path", cfg.Prefix)
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("open store: endpoint %q: %w", cfg.Endpoint, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("open store: endpoint %q: file URLs must be file:///absolute/dir", cfg.Endpoint)
		}
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("open store: endpoint %q: directory must be absolute", cfg.Endpoint)
		}
		if strings.Contains(cfg.Bucket, "/") || cfg.Bucket == ".." || cfg.Bucket == "." {
			return nil, fmt.Errorf("open store: invalid bucket %q", cfg.Bucket)
		}
		return NewLocal(filepath.Join(u.Path, cfg.Bucket))
	case "http", "https":
		return NewS3(ctx, cfg)
	case "":
		return nil, errors.New("open store: no endpoint configured (want file:///dir or http(s)://host:port)")
	default:
		return nil, fmt.Errorf("open store: endpoint %q: unsupported scheme %q (want file, http or https)", cfg.Endpoint, u.Scheme)
	}
}
