// Package server is kfbridge's process: it parses configuration from flags and the environment,
// wires the object store, log store, run manager and handlers, lists every endpoint in routes.go,
// serves with graceful shutdown, and implements the CLI (serve, run, submit, …).
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kfbridge/kfbridge/runner"
)

// exitError carries a process exit code through an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks command-line mistakes (exit code 2).
func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

const usage = `usage: kfbridge <command> [flags]

commands:
  serve     run the kfbridge service (local runtime and local store by default)
  run       run a pipeline on an embedded server and follow its logs (no setup needed)
  submit    submit a pipeline to a kfbridge server; --follow prints step logs live
  logs      print (-f: follow) a run's or step's log; exits with the step's result
  export    compile a pipeline for KFP (argo or kfp-v2) and upload its files
  runtimes  manage runtime configurations: list, get, create, update, delete, import (Elyra's)
  runtime-images
            manage runtime images (the same subcommands)
  validate  check a pipeline (or notebook/script) and its files; exit 1 on errors
  step      run one pipeline step (the kfbridge-step runner, for the local runtime)
  version   print the version

Run "kfbridge <command> -h" for a command's flags.
`

// Run is kfbridge's main. It returns the process exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[1] {
	case "serve":
		var cfg *Config
		if cfg, err = parseServeConfig(args[2:], getenv, stderr); err == nil {
			err = serve(ctx, cfg, getenv, stdout, stderr, nil)
		} else if !errors.Is(err, flag.ErrHelp) {
			err = &exitError{code: 2, err: err}
		}
	case "run":
		err = runEmbedded(ctx, args[2:], getenv, stdout, stderr)
	case "submit":
		err = submitCmd(ctx, args[2:], getenv, stdout, stderr)
	case "logs":
		err = logsCmd(ctx, args[2:], getenv, stdout, stderr)
	case "export":
		err = exportCmd(ctx, args[2:], getenv, stdout, stderr)
	case "runtimes", "runtime-images":
		err = runtimesCmd(ctx, args[1], args[2:], getenv, stdout, stderr)
	case "validate":
		err = validateCmd(ctx, args[2:], stdout, stderr)
	case "step":
		// The step runner handles its own arguments; argv[0] is kept for its messages.
		return runner.Main(ctx, append([]string{"kfbridge-step"}, args[2:]...), getenv, stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "kfbridge", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "kfbridge: unknown command %q\n\n%s", args[1], usage)
		return 2
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "kfbridge:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "kfbridge:", err)
	return 1
}
