package handlers

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"

	"github.com/kfbridge/kfbridge/pipeline"
)

// ValidatePipeline handles POST /api/v1/pipelines/validate. The body is either a pipeline document
// (as Elyra's frontend sends it: node file names workspace-relative) or {"path": "x.pipeline"} naming
// a file in the workspace. It always answers 200 with {"issues": […]} in Elyra's issue shape — an
// unreadable body is itself an issue — so a client needs only one code path.
func ValidatePipeline(log *slog.Logger, workspace string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
		if err != nil {
			Error(log, w, r, err)
			return
		}
		issues := validateBody(body, workspace)
		if issues == nil {
			issues = []pipeline.Issue{}
		}
		encode(w, http.StatusOK, map[string]any{"issues": issues})
	})
}

func validateBody(body []byte, workspace string) []pipeline.Issue {
	var ref struct {
		Path      string          `json:"path"`
		Pipelines json.RawMessage `json:"pipelines"`
	}
	if json.Unmarshal(body, &ref) == nil && ref.Path != "" && ref.Pipelines == nil {
		return ValidateFile(workspace, ref.Path)
	}
	_, issues := pipeline.Load(body, workspace)
	return issues
}

// ValidateFile validates a .pipeline file at rel inside root, with node file names taken relative
// to the pipeline file as Elyra saves them. Problems reading the file are issues too.
func ValidateFile(root, rel string) []pipeline.Issue {
	fail := func(msg string) []pipeline.Issue {
		return []pipeline.Issue{{Severity: pipeline.SeverityError, Source: pipeline.IssueSource,
			Type: pipeline.TypeInvalidFilePath, Message: msg, Data: map[string]any{pipeline.DataValue: rel}}}
	}
	abs, err := pipeline.Confine(root, rel)
	if err != nil {
		return fail(fmt.Sprintf("pipeline path %q: %v", rel, err))
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return fail(fmt.Sprintf("pipeline %q: %s", rel, notExistMsg(err)))
	}
	p, issues := pipeline.Parse(data)
	if p == nil || pipeline.HasErrors(issues) {
		return issues
	}
	pipeline.RebaseFilenames(p, path.Dir(filepath.ToSlash(path.Clean(rel))))
	return append(issues, pipeline.Validate(p, root)...)
}
