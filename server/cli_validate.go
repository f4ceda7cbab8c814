package server

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

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
	root, rel, err := locate(file, *workspace)
	if err != nil {
		return err
	}
	_, issues, err := loadLocal(root, rel)
	if err != nil {
		return err
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
