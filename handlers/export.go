package handlers

import (
	"context"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/kfbridge/kfbridge/pipeline"
)

// ExportFunc compiles a validated pipeline whose files lie under root into a KFP package.
type ExportFunc func(ctx context.Context, p *pipeline.Pipeline, root, format string, noUpload bool) ([]byte, error)

// ExportPipeline handles POST /api/v1/pipelines/export: {"path": "x.pipeline", "format": "argo" |
// "kfp-v2", "no_upload": false}. It validates like a submit (400 with issues), packages the node
// files into the object store unless no_upload, and answers the package YAML as an attachment.
func ExportPipeline(log *slog.Logger, workspace string, export ExportFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[struct {
			Path     string `json:"path"`
			Format   string `json:"format"`
			NoUpload bool   `json:"no_upload"`
		}](w, r)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		if req.Format == "" {
			req.Format = "argo"
		}
		p, err := loadPipeline(workspace, submitRequest{Path: req.Path})
		if err != nil {
			Error(log, w, r, err)
			return
		}
		out, err := export(r.Context(), p, workspace, req.Format, req.NoUpload)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		name := strings.TrimSuffix(pathBase(req.Path), ".pipeline") + "." + req.Format + ".yaml"
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(out)
	})
}

func pathBase(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
