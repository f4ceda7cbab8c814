package server

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/pipeline"
)

// validateCmd implements `kfbridge validate FILE [--workspace DIR] [--json]`: exit 0 when there is
// no error-severity issue, 1 when there is, 2 on usage errors. It needs no server.
func validateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kfbridge validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge validate FILE [--workspace DIR] [--json]")
		fs.PrintDefaults()
	}
	workspace := fs.String("workspace", "", "workspace root node files must lie in (default: the current directory if it contains FILE, else FILE's directory)")
	jsonOut := fs.Bool("json", false, `print {"issues":[…]} (Elyra's issue shape)`)
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return usageErr("%s: %v", file, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return usageErr("%s: %v", file, err)
	}
	root := *workspace
	if root == "" {
		cwd, _ := os.Getwd()
		root = filepath.Dir(abs)
		if r, err := filepath.Rel(cwd, abs); err == nil && !strings.HasPrefix(r, "..") {
			root = cwd
		}
	}
	root, _ = filepath.Abs(root)
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return usageErr("%s is not inside the workspace %s (use --workspace)", file, root)
	}
	var issues []pipeline.Issue
	if strings.EqualFold(filepath.Ext(rel), ".pipeline") {
		issues = handlers.ValidateFile(root, filepath.ToSlash(rel))
	} else {
		p, err := pipeline.FromFile(filepath.ToSlash(rel), pipeline.FileOptions{})
		if err != nil {
			return usageErr("%v", err)
		}
		issues = pipeline.Validate(p, root)
	}
	if issues == nil {
		issues = []pipeline.Issue{}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"issues": issues})
	} else {
		errs, warns := 0, 0
		for _, is := range issues {
			fmt.Fprintln(stdout, is.String())
			switch is.Severity {
			case pipeline.SeverityError:
				errs++
			case pipeline.SeverityWarning:
				warns++
			}
		}
		fmt.Fprintf(stdout, "%s: %d error(s), %d warning(s)\n", file, errs, warns)
	}
	if pipeline.HasErrors(issues) {
		return &exitError{code: 1}
	}
	return nil
}
