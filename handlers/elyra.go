package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// The handlers in the elyra*.go files serve Elyra's server REST API (Elyra's elyra.yaml), so the
// Elyra JupyterLab frontend can use kfbridge as its backend with Elyra's own server extension
// disabled. Every route is served twice: at /elyra/… (kfbridge reached directly) and at the root
// (kfbridge mounted as jupyter-server-proxy's named server "elyra", which strips <base_url>elyra).
// Bodies and errors use Elyra's shapes; docs/elyra-api.md lists the differences.

// ElyraSubmitFunc submits a validated pipeline with the runtime configuration it names (the
// built-in local runtime, or a stored one with its secrets), through the run manager.
type ElyraSubmitFunc func(ctx context.Context, sub runs.Submission, runtime runs.RuntimeConfig) (*runs.Run, error)

// ElyraConfig is what the Elyra API handlers need.
type ElyraConfig struct {
	Log *slog.Logger
	// Workspace is the root every path in a request is confined to (Jupyter's root directory).
	Workspace string
	Runs      RunService
	Runtimes  *runs.RuntimeStore
	// Submit starts a run; Export compiles a pipeline into a KFP package.
	Submit ElyraSubmitFunc
	Export ExportFunc
	Paths  ProxyPaths
	// Spec is the OpenAPI description served at /elyra/elyra.yaml.
	Spec []byte
	// KFPWait bounds how long a schedule on a KFP runtime waits for the KFP run to exist, so it
	// can answer KFP's run id as Elyra does (default 2 minutes).
	KFPWait time.Duration
}

func (c ElyraConfig) kfpWait() time.Duration {
	if c.KFPWait > 0 {
		return c.KFPWait
	}
	return 2 * time.Minute
}

// Elyra's validation response title and description.
const (
	elyraValidationTitle = "Elyra Pipeline Validation Service"
	elyraValidationDesc  = "Validation results for the pipeline, from kfbridge"
)

// ElyraScheduleResponse is the body of a successful POST /elyra/pipeline/schedule: Elyra's fields plus
// kfbridge's run id and the URL of its live log panel.
type ElyraScheduleResponse struct {
	Platform          string `json:"platform"`
	RunURL            string `json:"run_url"`
	ObjectStorageURL  string `json:"object_storage_url"`
	ObjectStoragePath string `json:"object_storage_path"`
	// RunID is KFP's run id on a KFP runtime, kfbridge's on the local runtime.
	RunID         string `json:"run_id"`
	KfbridgeRunID string `json:"kfbridge_run_id"`
	LogPanelURL   string `json:"log_panel_url"`
}

// readPipelineBody parses and validates the pipeline JSON Elyra's frontend sends: node file names
// are already workspace-relative, app_data carries name, source and runtime_config.
func readPipelineBody(w http.ResponseWriter, r *http.Request, workspace string) (*pipeline.Pipeline, []pipeline.Issue, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return nil, nil, fmt.Errorf("read pipeline: %w", err)
	}
	p, issues := pipeline.Load(body, workspace)
	return p, issues, nil
}

// resolveRuntime finds the runtime configuration a pipeline names: the built-in local runtime
// when app_data.runtime_config is empty or "local", else the stored one. A missing one is a
// validation issue, as in Elyra.
func resolveRuntime(store *runs.RuntimeStore, p *pipeline.Pipeline) (runs.RuntimeConfig, *pipeline.Issue, error) {
	name := p.RuntimeConfig
	if name == "" || name == runs.LocalRuntimeName {
		return runs.LocalRuntime(), nil, nil
	}
	if store == nil {
		return runs.RuntimeConfig{}, nil, errors.New("elyra: no runtime store")
	}
	rc, err := store.GetRuntime(name)
	if errors.Is(err, runs.ErrNotFound) {
		return runs.RuntimeConfig{}, &pipeline.Issue{Severity: pipeline.SeverityError, Source: pipeline.IssueSource, Type: pipeline.TypeInvalidRuntime,
			Message: fmt.Sprintf("runtime configuration %q not found: create it under Runtimes, or run the pipeline locally", name),
			Data:    map[string]any{pipeline.DataRuntime: p.RuntimeType}}, nil
	}
	if err != nil {
		return runs.RuntimeConfig{}, nil, err
	}
	if p.RuntimeType != "" && p.RuntimeType != rc.Metadata.RuntimeType {
		return runs.RuntimeConfig{}, &pipeline.Issue{Severity: pipeline.SeverityError, Source: pipeline.IssueSource, Type: pipeline.TypeInvalidRuntime,
			Message: fmt.Sprintf("the pipeline is for %s but runtime configuration %q is for %s", p.RuntimeType, name, rc.Metadata.RuntimeType),
			Data:    map[string]any{pipeline.DataRuntime: p.RuntimeType}}, nil
	}
	return rc, nil, nil
}

// ElyraValidate handles POST /elyra/pipeline/validate: always 200 {title, description, issues}.
func ElyraValidate(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, issues, err := readPipelineBody(w, r, c.Workspace)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		if p != nil {
			_, is, err := resolveRuntime(c.Runtimes, p)
			if err != nil {
				ElyraError(c.Log, w, r, err)
				return
			}
			if is != nil {
				issues = append(issues, *is)
			}
		}
		if issues == nil {
			issues = []pipeline.Issue{}
		}
		encode(w, http.StatusOK, map[string]any{"title": elyraValidationTitle, "description": elyraValidationDesc, "issues": issues})
	})
}

// validPipeline reads the pipeline (body) and resolves its runtime configuration; it fails with
// Elyra's 400 "Errors found in pipeline" and the issues when there is an error-severity one.
func validPipeline(c ElyraConfig, body func() (*pipeline.Pipeline, []pipeline.Issue, error)) (*pipeline.Pipeline, runs.RuntimeConfig, error) {
	p, issues, err := body()
	if err != nil {
		return nil, runs.RuntimeConfig{}, err
	}
	var rc runs.RuntimeConfig
	if p != nil && !pipeline.HasErrors(issues) {
		var is *pipeline.Issue
		if rc, is, err = resolveRuntime(c.Runtimes, p); err != nil {
			return nil, rc, err
		}
		if is != nil {
			issues = append(issues, *is)
		}
	}
	if p == nil || pipeline.HasErrors(issues) {
		return nil, rc, &issuesError{msg: "Errors found in pipeline: " + firstError(issues), issues: issues}
	}
	return p, rc, nil
}

// ElyraSchedule handles POST /elyra/pipeline/schedule. It validates, submits through the run
// manager and answers once the run exists: at once on the local runtime (Elyra waits for the whole
// local run; kfbridge returns and streams its logs instead), after KFP has the run on a KFP
// runtime, so run_id is KFP's as in Elyra.
func ElyraSchedule(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, rc, err := validPipeline(c, func() (*pipeline.Pipeline, []pipeline.Issue, error) { return readPipelineBody(w, r, c.Workspace) })
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		if c.Submit == nil {
			ElyraError(c.Log, w, r, errors.New("elyra schedule: no submit function configured"))
			return
		}
		run, err := c.Submit(r.Context(), runs.Submission{Pipeline: p, Root: c.Workspace}, rc)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		platform := runs.RuntimeTypeLocal
		if rc.Metadata.RuntimeType == runs.RuntimeTypeKFP {
			platform = runs.RuntimeTypeKFP
			if run, err = waitKFPRun(r.Context(), c.Runs, run.ID, c.kfpWait()); err != nil {
				ElyraError(c.Log, w, r, err)
				return
			}
		}
		encode(w, http.StatusOK, scheduleBody(c.Paths.Root(r), platform, run))
	})
}

func scheduleBody(root, platform string, run *runs.Run) ElyraScheduleResponse {
	id := url.QueryEscape(run.ID)
	out := ElyraScheduleResponse{
		Platform:          platform,
		RunURL:            root + "/#/runs/" + id,
		ObjectStorageURL:  strings.TrimSuffix(run.ObjectStoreURL, "/"+run.RunDir),
		ObjectStoragePath: run.RunDir,
		RunID:             run.ID,
		KfbridgeRunID:     run.ID,
		LogPanelURL:       root + "/panel.html#run=" + id,
	}
	if platform == runs.RuntimeTypeKFP {
		out.RunID = run.KFPRunID
		if run.RunURL != "" {
			out.RunURL = run.RunURL
		}
	}
	return out
}

// waitKFPRun waits until the run manager has created the KFP run (KFPRunID set) or the run ended
// without one (its error is the answer, as Elyra's processor errors are).
func waitKFPRun(ctx context.Context, svc RunService, id string, limit time.Duration) (*runs.Run, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		run, err := svc.Get(id)
		if err != nil {
			return nil, err
		}
		if run.KFPRunID != "" {
			return run, nil
		}
		if runs.Terminal(run.Status) {
			return nil, fmt.Errorf("submit run %s to Kubeflow Pipelines: %s", id, run.Error)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("submit run %s to Kubeflow Pipelines: no KFP run after %s: %w", id, limit, ctx.Err())
		case <-tick.C:
		}
	}
}

// elyraExportRequest is Elyra's export body.
type elyraExportRequest struct {
	Pipeline     json.RawMessage `json:"pipeline"`
	ExportFormat string          `json:"export_format"`
	ExportPath   string          `json:"export_path"`
	Overwrite    bool            `json:"overwrite"`
}

// ElyraExport handles POST /elyra/pipeline/export: validates, compiles ("yaml": KFP 2.x IR, or an
// Argo workflow for a runtime configured with api_version v1beta1; "argo" and "kfp-v2" name a target
// explicitly) and writes the package into the workspace at export_path. 201 {export_path} with
// Location <jupyter base>api/contents/<path>; 409 if the file exists and overwrite is false.
func ElyraExport(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[elyraExportRequest](w, r)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		if len(req.Pipeline) == 0 || req.ExportPath == "" || req.ExportFormat == "" {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: pipeline, export_format and export_path are required", errBadRequest))
			return
		}
		if req.ExportFormat == "py" {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: export format \"py\" (KFP Python DSL) is not supported by kfbridge: export as \"yaml\", which KFP runs as it is", errBadRequest))
			return
		}
		p, rc, err := validPipeline(c, func() (*pipeline.Pipeline, []pipeline.Issue, error) {
			p, issues := pipeline.Load(req.Pipeline, c.Workspace)
			return p, issues, nil
		})
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		format, err := exportTarget(req.ExportFormat, rc)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		rel := path.Clean(filepath.ToSlash(req.ExportPath))
		abs, err := pipeline.Confine(c.Workspace, rel)
		if err != nil {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: export_path %q: %v", errBadRequest, req.ExportPath, err))
			return
		}
		if fi, err := os.Stat(abs); err == nil {
			if fi.IsDir() {
				ElyraError(c.Log, w, r, fmt.Errorf("%w: export_path %q is a directory", errBadRequest, rel))
				return
			}
			if !req.Overwrite {
				ElyraError(c.Log, w, r, fmt.Errorf("%w: file %s already exists: export with overwrite to replace it", runs.ErrConflict, rel))
				return
			}
		}
		if c.Export == nil {
			ElyraError(c.Log, w, r, errors.New("elyra export: no export function configured"))
			return
		}
		out, err := c.Export(r.Context(), p, c.Workspace, format, false)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		if err := writeExport(abs, out); err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		w.Header().Set("Location", c.Paths.JupyterBase(r)+"api/contents/"+escapePath(rel))
		encode(w, http.StatusCreated, map[string]string{"export_path": rel})
	})
}

// exportTarget maps Elyra's export_format to a compile target.
func exportTarget(format string, rc runs.RuntimeConfig) (string, error) {
	switch format {
	case "yaml":
		if rc.Metadata.APIVersion == kfp.V1Beta1 {
			return runs.FormatArgo, nil
		}
		return runs.FormatKFPv2, nil
	case runs.FormatArgo, runs.FormatKFPv2:
		return format, nil
	}
	return "", fmt.Errorf("%w: export format %q: kfbridge exports \"yaml\" (KFP package; also \"argo\" or \"kfp-v2\" explicitly)", errBadRequest, format)
}

// writeExport writes the package atomically, so a failed export never leaves half a file.
func writeExport(abs string, data []byte) error {
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: export directory %s does not exist in the workspace", errBadRequest, filepath.Base(dir))
	}
	f, err := os.CreateTemp(dir, ".kfbridge-export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("export: write: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("export: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(f.Name(), abs); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// escapePath escapes each segment of a slash-separated path for a URL.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// ElyraSpec handles GET /elyra/elyra.yaml.
func ElyraSpec(spec []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/x-yaml")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(spec)
	})
}

// ElyraComponentCache handles PUT /elyra/pipeline/components/cache[/{catalog}]: kfbridge has only
// the generic components, so there is nothing to refresh (204); a named catalog does not exist.
func ElyraComponentCache(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[struct {
			Action string `json:"action"`
		}](w, r)
		if err == nil && req.Action != "refresh" {
			err = fmt.Errorf("%w: action %q: only \"refresh\" is supported", errBadRequest, req.Action)
		}
		if err != nil {
			ElyraError(log, w, r, err)
			return
		}
		if cat := chi.URLParam(r, "catalog"); cat != "" {
			ElyraError(log, w, r, fmt.Errorf("%w: component catalog %q: kfbridge has no component catalogs (custom components are not supported)", runs.ErrNotFound, cat))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
