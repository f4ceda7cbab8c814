package server

import (
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/pipeline"
)

// locate resolves a FILE argument of the CLI against a workspace root: the given one, else the
// current directory if it contains FILE, else FILE's own directory. It returns the absolute root
// and FILE's slash-separated path inside it.
func locate(file, workspace string) (root, rel string, err error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", "", usageErr("%s: %v", file, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", "", usageErr("%s: %v", file, err)
	}
	abs = evalOr(abs)
	root = workspace
	if root == "" {
		cwd, _ := os.Getwd()
		root = filepath.Dir(abs)
		if r, err := filepath.Rel(evalOr(cwd), abs); err == nil && !strings.HasPrefix(r, "..") {
			root = cwd
		}
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", "", usageErr("workspace %s: %v", workspace, err)
	}
	root = evalOr(root)
	r, err := filepath.Rel(root, abs)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", "", usageErr("%s is not inside the workspace %s (use --workspace)", file, root)
	}
	return root, filepath.ToSlash(r), nil
}

func evalOr(p string) string {
	if e, err := filepath.EvalSymlinks(p); err == nil {
		return e
	}
	return p
}

// loadLocal reads and validates a pipeline (or a single notebook/script) at rel inside root, the
// way the server does for a submission. p is nil when there are error issues.
func loadLocal(root, rel string) (*pipeline.Pipeline, []pipeline.Issue, error) {
	if !strings.EqualFold(path.Ext(rel), ".pipeline") {
		p, err := pipeline.FromFile(rel, pipeline.FileOptions{})
		if err != nil {
			return nil, nil, usageErr("%v", err)
		}
		issues := pipeline.Validate(p, root)
		if pipeline.HasErrors(issues) {
			return nil, issues, nil
		}
		return p, issues, nil
	}
	issues := handlers.ValidateFile(root, rel)
	if pipeline.HasErrors(issues) {
		return nil, issues, nil
	}
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, nil, err
	}
	p, _ := pipeline.Parse(data)
	pipeline.RebaseFilenames(p, path.Dir(rel))
	return p, issues, nil
}
