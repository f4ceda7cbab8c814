package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// RunService is what the run handlers need from the run manager.
type RunService interface {
	Submit(ctx context.Context, sub runs.Submission) (*runs.Run, error)
	Get(id string) (*runs.Run, error)
	List() []*runs.Run
	Cancel(id string) error
}

// SubmitConfig configures the submit handler.
type SubmitConfig struct {
	// Workspace is the root every submitted path is confined to.
	Workspace string
	// BundleDir is where uploaded bundles are unpacked, one directory per submission.
	BundleDir string
	// MaxBundle caps an uploaded bundle's size in bytes.
	MaxBundle int64
	// Extract unpacks a tar.gz bundle into dest, refusing entries that escape it.
	Extract func(ctx context.Context, r io.Reader, dest string) error
	// Idempotency makes submissions with an Idempotency-Key header safe to retry; nil means the
	// RunService's own store if it has one (Idempotency() *runs.IdempotencyStore).
	Idempotency *runs.IdempotencyStore
}

// IdempotencyKeyHeader names the header that makes a submission safe to retry.
const IdempotencyKeyHeader = "Idempotency-Key"

// submitRequest is the JSON form of a submission, and the "options" part of a bundle upload.
type submitRequest struct {
	// Path is the pipeline (.pipeline) or single file (.py, .ipynb, .r) to run, relative to the
	// workspace root (or to the bundle's root for uploads).
	Path string `json:"path"`
	// Name overrides the pipeline name.
	Name string `json:"name,omitempty"`
	// Runtime names the runtime configuration to run on (GET /api/v1/runtimes); default "local".
	Runtime string `json:"runtime,omitempty"`
	// Parameters override pipeline parameter values.
	Parameters map[string]any `json:"parameters,omitempty"`
	// File options for single-file submissions.
	RuntimeImage string            `json:"runtime_image,omitempty"`
	Dependencies []string          `json:"dependencies,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
}

// SubmitRun handles POST /api/v1/runs. The body is either JSON naming a file in the workspace
// (a server beside JupyterLab) or multipart/form-data with a tar.gz "bundle" part holding the
// pipeline and its files plus an "options" part with the same JSON (a client on another machine).
// It answers 201 with the run as soon as the run exists; the run proceeds in the background (on a
// KFP runtime: once the KFP run exists, with kfp_run_id, run_url and object_storage_url).
//
// With an Idempotency-Key header, a retry of the same request (same credential, same key, within
// 24 h) gets the first answer again, status and body, with header Idempotent-Replayed: true, and
// never creates a second run; a retry arriving while the first is still processed waits for it.
// Reusing a key for a different request is a 409.
func SubmitRun(log *slog.Logger, svc RunService, cfg SubmitConfig) http.Handler {
	if cfg.Idempotency == nil {
		// The run manager keeps the answers in its data dir.
		if p, ok := svc.(interface{ Idempotency() *runs.IdempotencyStore }); ok {
			cfg.Idempotency = p.Idempotency()
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyKeyHeader)
		if key != "" && cfg.Idempotency != nil {
			if err := runs.CheckIdempotencyKey(key); err != nil {
				Error(log, w, r, err)
				return
			}
		}
		sub, req, err := readSubmission(w, r, cfg)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		cleanup := func() {
			if sub.Cleanup != nil {
				sub.Cleanup()
			}
		}
		p, err := loadPipeline(sub.Root, req)
		if err != nil {
			cleanup()
			Error(log, w, r, err)
			return
		}
		sub.Pipeline = p
		sub.Runtime = req.Runtime
		var claim *runs.IdempotencyClaim
		if key != "" && cfg.Idempotency != nil {
			prev, c, err := cfg.Idempotency.Begin(r.Context(), credentialScope(r), key, submissionFingerprint(r, req))
			if err != nil {
				cleanup()
				Error(log, w, r, err)
				return
			}
			if prev != nil {
				cleanup()
				w.Header().Set("Idempotent-Replayed", "true")
				if prev.RunID != "" {
					w.Header().Set("Location", "runs/"+prev.RunID)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.WriteHeader(prev.Status)
				w.Write(prev.Body)
				return
			}
			claim = c
			defer claim.Release()
		}
		run, err := svc.Submit(r.Context(), sub)
		if err != nil {
			if sub.Cleanup != nil {
				sub.Cleanup()
			}
			Error(log, w, r, err)
			return
		}
		var body bytes.Buffer
		writeJSON(&body, run)
		if claim != nil {
			if err := claim.Commit(http.StatusCreated, body.Bytes(), run.ID); err != nil {
				log.Error("idempotency: answer not kept", "run_id", run.ID, "err", err)
			}
		}
		w.Header().Set("Location", "runs/"+run.ID)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusCreated)
		w.Write(body.Bytes())
	})
}

// credentialScope is the digest of the credential a request authenticated with, so idempotency
// keys of different credentials never meet.
func credentialScope(r *http.Request) string {
	cred := bearer(r)
	if cred == "" {
		if c, err := r.Cookie(SessionCookie); err == nil {
			cred = c.Value
		}
	}
	sum := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(sum[:])
}

// submissionFingerprint identifies what a submission asked for: its options (JSON or the bundle's
// options part). A bundle's files are not hashed: a retry sends the same bundle.
func submissionFingerprint(r *http.Request, req submitRequest) string {
	b, _ := json.Marshal(req)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	sum := sha256.Sum256(append([]byte(ct+"\x00"), b...))
	return hex.EncodeToString(sum[:])
}

func readSubmission(w http.ResponseWriter, r *http.Request, cfg SubmitConfig) (runs.Submission, submitRequest, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		req, err := decode[submitRequest](w, r)
		return runs.Submission{Root: cfg.Workspace}, req, err
	}
	r.Body = http.MaxBytesReader(w, r.Body, cfg.MaxBundle)
	mr, err := r.MultipartReader()
	if err != nil {
		return runs.Submission{}, submitRequest{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := os.MkdirAll(cfg.BundleDir, 0o700); err != nil {
		return runs.Submission{}, submitRequest{}, err
	}
	dir, err := os.MkdirTemp(cfg.BundleDir, "bundle-")
	if err != nil {
		return runs.Submission{}, submitRequest{}, err
	}
	sub := runs.Submission{Root: dir, Cleanup: func() { os.RemoveAll(dir) }}
	var req submitRequest
	gotBundle, gotOptions := false, false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sub.Cleanup()
			return runs.Submission{}, req, fmt.Errorf("%w: read multipart body: %v", errBadRequest, err)
		}
		switch part.FormName() {
		case "options":
			dec := json.NewDecoder(io.LimitReader(part, maxJSONBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				sub.Cleanup()
				return runs.Submission{}, req, fmt.Errorf("%w: invalid options part: %v", errBadRequest, err)
			}
			gotOptions = true
		case "bundle":
			if err := cfg.Extract(r.Context(), part, dir); err != nil {
				sub.Cleanup()
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return runs.Submission{}, req, err
				}
				return runs.Submission{}, req, fmt.Errorf("%w: invalid bundle: %v", errBadRequest, err)
			}
			gotBundle = true
		}
		part.Close()
	}
	if !gotBundle || !gotOptions {
		sub.Cleanup()
		return runs.Submission{}, req, fmt.Errorf("%w: a bundle upload needs a \"bundle\" part (tar.gz) and an \"options\" part (JSON)", errBadRequest)
	}
	return sub, req, nil
}

// loadPipeline reads, normalizes and validates the submitted file. Any error-severity issue fails
// the submission with 400 and every issue, so nothing is half-created.
func loadPipeline(root string, req submitRequest) (*pipeline.Pipeline, error) {
	if req.Path == "" {
		return nil, fmt.Errorf("%w: \"path\" is required", errBadRequest)
	}
	abs, err := pipeline.Confine(root, req.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", errBadRequest, req.Path, err)
	}
	rel := path.Clean(filepath.ToSlash(req.Path))
	var p *pipeline.Pipeline
	switch strings.ToLower(path.Ext(rel)) {
	case ".pipeline":
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", errBadRequest, rel, notExistMsg(err))
		}
		var issues []pipeline.Issue
		p, issues = pipeline.Parse(data)
		if p != nil && !pipeline.HasErrors(issues) {
			pipeline.RebaseFilenames(p, path.Dir(rel))
			if p.Source == "" {
				p.Source = path.Base(rel)
			}
			issues = append(issues, pipeline.Validate(p, root)...)
		}
		if p == nil || pipeline.HasErrors(issues) {
			return nil, &issuesError{msg: "Errors found in pipeline " + rel + ": " + firstError(issues), issues: issues}
		}
	case ".py", ".ipynb", ".r":
		opts := pipeline.FileOptions{RuntimeImage: req.RuntimeImage, Dependencies: req.Dependencies}
		for k, v := range req.Env {
			opts.Env = append(opts.Env, pipeline.EnvVar{Name: k, Value: v})
		}
		p, err = pipeline.FromFile(rel, opts)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		if issues := pipeline.Validate(p, root); pipeline.HasErrors(issues) {
			return nil, &issuesError{msg: "Errors found in " + rel + ": " + firstError(issues), issues: issues}
		}
	default:
		return nil, fmt.Errorf("%w: %s: want a .pipeline, .ipynb, .py or .r file", errBadRequest, rel)
	}
	if req.Name != "" {
		p.Name = req.Name
	}
	for name, v := range req.Parameters {
		found := false
		for i := range p.Parameters {
			if p.Parameters[i].Name == name {
				p.Parameters[i].Value, found = v, true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: parameter %q is not defined by the pipeline", errBadRequest, name)
		}
	}
	return p, nil
}

func firstError(issues []pipeline.Issue) string {
	for _, is := range issues {
		if is.Severity == 1 {
			return is.Message
		}
	}
	return "invalid pipeline"
}

func notExistMsg(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "no such file in the workspace"
	}
	return "cannot read the file"
}

// ListRuns handles GET /api/v1/runs.
func ListRuns(svc RunService) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, struct {
			Runs []*runs.Run `json:"runs"`
		}{svc.List()})
	})
}

// GetRun handles GET /api/v1/runs/{id}.
func GetRun(log *slog.Logger, svc RunService) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		run, err := svc.Get(chi.URLParam(r, "id"))
		if err != nil {
			Error(log, w, r, err)
			return
		}
		encode(w, http.StatusOK, run)
	})
}

// CancelRun handles POST /api/v1/runs/{id}:cancel.
func CancelRun(log *slog.Logger, svc RunService) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if err := svc.Cancel(id); err != nil {
			Error(log, w, r, err)
			return
		}
		run, err := svc.Get(id)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		encode(w, http.StatusAccepted, run)
	})
}

// Health handles GET /api/v1/healthz.
func Health(version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok", "version": version})
	})
}
