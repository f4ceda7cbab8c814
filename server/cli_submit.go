package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
)

// submitOptions are the flags shared by `submit` and `run`.
type submitOptions struct {
	workspace  string
	follow     bool
	jsonOut    bool
	remotePath bool
	name       string
	runtime    string
	params     stringList
}

func (o *submitOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.workspace, "workspace", "", "local workspace root the pipeline's files are relative to (default: the current directory if it contains FILE, else FILE's directory)")
	fs.BoolVar(&o.follow, "follow", false, "print every step's lines live and exit 0 only if the run succeeded")
	fs.BoolVar(&o.jsonOut, "json", false, "print NDJSON events instead of text")
	fs.BoolVar(&o.remotePath, "remote-path", false, "FILE is a path inside the server's workspace: send the path, not a bundle")
	fs.StringVar(&o.name, "name", "", "run name (default: the pipeline's name)")
	fs.StringVar(&o.runtime, "runtime", "", "runtime configuration to run on (see kfbridge runtimes list; default local)")
	fs.Var(&o.params, "param", "pipeline parameter override NAME=VALUE (repeatable)")
}

func submitCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kfbridge submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge submit FILE [--server URL] [--token T] [--follow] [--json]")
		fs.PrintDefaults()
	}
	var o submitOptions
	o.register(fs)
	srv := fs.String("server", envOr(getenv, "KFBRIDGE_SERVER", "http://127.0.0.1:8765"), "kfbridge server URL (env KFBRIDGE_SERVER)")
	token := fs.String("token", getenv("KFBRIDGE_TOKEN"), "API token (env KFBRIDGE_TOKEN)")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *token == "" {
		return usageErr("an API token is required: pass --token or set KFBRIDGE_TOKEN (the server prints it at start)")
	}
	return submitAndFollow(ctx, newClient(*srv, *token), file, o, stdout, stderr)
}

// parseWithFile parses flags that may come before or after the one FILE argument.
func parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	var file string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", err
			}
			return "", &exitError{code: 2}
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			return "", usageErr("only one FILE may be given (got %q and %q)", file, fs.Arg(0))
		}
		file, args = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		fs.Usage()
		return "", &exitError{code: 2}
	}
	return file, nil
}

func submitAndFollow(ctx context.Context, c *client, file string, o submitOptions, stdout, stderr io.Writer) error {
	opts := map[string]any{}
	if o.name != "" {
		opts["name"] = o.name
	}
	if o.runtime != "" {
		opts["runtime"] = o.runtime
	}
	if len(o.params) > 0 {
		params := map[string]any{}
		for _, kv := range o.params {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageErr("--param %q: want NAME=VALUE", kv)
			}
			params[k] = v
		}
		opts["parameters"] = params
	}
	var run *runs.Run
	var err error
	if o.remotePath {
		opts["path"] = file
		run, err = c.submitPath(ctx, opts)
	} else {
		var rel string
		var bundle []byte
		rel, bundle, err = makeBundle(file, o.workspace)
		if err != nil {
			return err
		}
		opts["path"] = rel
		run, err = c.submitBundle(ctx, opts, bundle)
	}
	if err != nil {
		return fmt.Errorf("submit %s: %w", file, err)
	}
	if !o.follow {
		if o.jsonOut {
			return json.NewEncoder(stdout).Encode(run)
		}
		fmt.Fprintf(stdout, "run %s submitted (%d steps)\n", run.ID, len(run.Steps))
		return nil
	}
	if !o.jsonOut {
		fmt.Fprintf(stderr, "run %s submitted (%d steps); following its logs\n", run.ID, len(run.Steps))
	}
	return followRun(ctx, c, run, o.jsonOut, stdout, stderr)
}

// followRun prints a run's lines and status events until it ends; the error carries exit code 1
// unless the run succeeded.
func followRun(ctx context.Context, c *client, run *runs.Run, jsonOut bool, stdout, stderr io.Writer) error {
	labels := map[string]string{}
	for _, s := range run.Steps {
		labels[s.ID] = s.Label
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	final, err := c.follow(ctx, run.ID, func(f wsFrame) {
		label := labels[f.Step]
		switch {
		case f.Type == "lines" && jsonOut:
			for _, l := range f.Lines {
				enc.Encode(map[string]any{"type": "line", "step": f.Step, "step_label": label, "seq": l.Seq,
					"ts": l.TS, "stream": l.Stream, "text": l.Text})
			}
		case f.Type == "lines":
			var b bytes.Buffer
			for _, l := range f.Lines {
				fmt.Fprintf(&b, "[%s] %s\n", label, l.Text)
			}
			stdout.Write(b.Bytes())
		case f.Type == logstream.EventProgress && jsonOut:
			enc.Encode(map[string]any{"type": "progress", "step": f.Step, "step_label": label, "phase": f.Status})
		case f.Type == logstream.EventProgress && (f.Status == "done" || f.Status == "deduplicated"):
			what := "uploaded"
			if f.Status == "deduplicated" {
				what = "unchanged, not uploaded again"
			}
			fmt.Fprintf(stderr, "packaged %q: %s\n", label, what)
		case f.Type == logstream.EventStep && jsonOut:
			enc.Encode(map[string]any{"type": "step", "step": f.Step, "step_label": label, "status": f.Status, "exit_code": f.ExitCode})
		case f.Type == logstream.EventStep && runs.Terminal(f.Status):
			code := ""
			if f.ExitCode != nil {
				code = fmt.Sprintf(" (exit code %d)", *f.ExitCode)
			}
			fmt.Fprintf(stderr, "step %q %s%s\n", label, f.Status, code)
		case f.Type == logstream.EventRun && !jsonOut && f.Message != "" && runs.Terminal(f.Status):
			fmt.Fprintf(stderr, "run %s %s: %s\n", run.ID, f.Status, f.Message)
		}
	})
	if err != nil {
		return err
	}
	if jsonOut {
		enc.Encode(map[string]any{"type": "run", "id": run.ID, "status": final})
	} else {
		fmt.Fprintf(stderr, "run %s %s\n", run.ID, final)
	}
	if final != runs.StatusSucceeded {
		return &exitError{code: 1}
	}
	return nil
}

// makeBundle packs FILE and every file its nodes need into a tar.gz, with paths relative to the
// workspace root. It returns FILE's path inside the bundle.
func makeBundle(file, workspace string) (string, []byte, error) {
	root, rel, err := locate(file, workspace)
	if err != nil {
		return "", nil, err
	}
	files := map[string]bool{rel: true}
	// Validate before uploading anything: the same checks the server makes, with the same issues.
	p, issues, err := loadLocal(root, rel)
	if err != nil {
		return "", nil, err
	}
	if p == nil {
		return "", nil, &exitError{code: 1, err: fmt.Errorf("%s: %s", file, issueText(issues))}
	}
	for _, n := range p.Nodes {
		dir, deps, err := pipeline.NodeFiles(root, n)
		if err != nil {
			continue
		}
		for _, f := range deps {
			files[path.Join(dir, f)] = true
		}
	}
	list := make([]string, 0, len(files))
	for f := range files {
		list = append(list, f)
	}
	sort.Strings(list)
	var buf bytes.Buffer
	if _, err := storage.WriteArchive(&buf, root, list); err != nil {
		return "", nil, fmt.Errorf("bundle %s: %w", file, err)
	}
	return rel, buf.Bytes(), nil
}

func issueText(issues []pipeline.Issue) string {
	var parts []string
	for _, is := range issues {
		if is.Severity == 1 {
			parts = append(parts, is.Type+": "+is.Message)
		}
	}
	if len(parts) == 0 {
		return "invalid pipeline"
	}
	return strings.Join(parts, "; ")
}
