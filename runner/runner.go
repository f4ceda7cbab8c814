// Package runner is the logic of kfbridge-step, the in-container step runner that replaces Elyra's
// bootstrapper.py. It accepts the bootstrapper's flags, fetches the node's archive and inputs from
// the object store, runs the node's file, tees every line as it is produced to its own stdout (the
// KFP dashboard), a log file and the kfbridge service, uploads outputs and the log, and exits with
// the file's exit code. It never pulls in the server, chi or the KFP client: a test keeps the step
// binary's dependency list short.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

// Version is set at build time.
var Version = "dev"

// pushGrace is how long a finished step waits for the service to acknowledge its last lines.
const pushGrace = 10 * time.Second

// config is the parsed command line.
type config struct {
	endpoint, bucket, directory, archive, archiveKey, prefix, region string
	file, pipelineName, params, passMethod, userVolume               string
	inputs, outputs                                                  []string
	runID, stepID, stepLabel, pushURL                                string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("kfbridge-step", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, long, short, usage string) {
		fs.StringVar(p, long, "", usage)
		if short != "" {
			fs.StringVar(p, short, "", "short for --"+long)
		}
	}
	var inputs, outputs string
	str(&c.endpoint, "cos-endpoint", "e", "object store endpoint: http(s)://host:port or file:///dir")
	str(&c.bucket, "cos-bucket", "b", "bucket")
	str(&c.directory, "cos-directory", "d", "run directory in the bucket")
	str(&c.archive, "cos-dependencies-archive", "t", "dependency archive name inside --cos-directory")
	str(&c.file, "file", "f", "node file (.py, .ipynb, .r), workspace-relative")
	str(&inputs, "inputs", "i", "';'-separated inputs to download from the run directory")
	str(&outputs, "outputs", "o", "';'-separated outputs to upload (files, globs, directories)")
	str(&c.userVolume, "user-volume-path", "p", "ignored (kfbridge never pip-installs)")
	str(&c.pipelineName, "pipeline-name", "n", "pipeline name")
	str(&c.params, "pipeline-parameters", "r", "';'-separated name=value pipeline parameters")
	str(&c.passMethod, "parameter-pass-method", "m", "how parameters are passed (env)")
	str(&c.archiveKey, "archive-key", "", "bucket-relative key of the dependency archive")
	str(&c.prefix, "cos-prefix", "", "object prefix")
	str(&c.runID, "run-id", "", "kfbridge run id")
	str(&c.stepID, "step-id", "", "step (node) id")
	str(&c.stepLabel, "step-label", "", "step display name")
	str(&c.pushURL, "push-url", "", "kfbridge service URL to push lines to")
	str(&c.region, "region", "", "S3 region")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.inputs, c.outputs = splitList(inputs), splitList(outputs)
	if c.pushURL == "" {
		c.pushURL = getenv("KFBRIDGE_PUSH_URL")
	}
	if c.region == "" {
		c.region = getenv("AWS_REGION")
	}
	var missing []string
	for _, f := range []struct{ v, name string }{{c.endpoint, "--cos-endpoint"}, {c.bucket, "--cos-bucket"},
		{c.directory, "--cos-directory"}, {c.file, "--file"}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if c.archive == "" && c.archiveKey == "" {
		missing = append(missing, "--cos-dependencies-archive or --archive-key")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing required flags: %s", strings.Join(missing, ", "))
	}
	if c.passMethod != "" && c.passMethod != "env" {
		return nil, fmt.Errorf("--parameter-pass-method %q is not supported (only env)", c.passMethod)
	}
	if c.stepID == "" {
		c.stepID = strings.TrimSuffix(filepath.Base(c.file), filepath.Ext(c.file))
	}
	if c.stepLabel == "" {
		c.stepLabel = filepath.Base(c.file)
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Main runs the step runner and returns the process exit code: the node's own exit code, 2 for
// usage errors, 1 for failures of the runner itself.
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 {
		switch args[1] {
		case "cp":
			if err := copyExecutable(args[2:]); err != nil {
				fmt.Fprintln(stderr, "kfbridge-step cp:", err)
				return 1
			}
			return 0
		case "version", "--version":
			fmt.Fprintln(stdout, "kfbridge-step", Version)
			return 0
		}
	}
	cfg, err := parseFlags(args[1:], getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "kfbridge-step:", err)
		return 2
	}
	s := &step{cfg: cfg, getenv: getenv, stdout: stdout, stderr: stderr, now: time.Now}
	return s.run(ctx)
}

// copyExecutable implements `kfbridge-step cp SRC DST`, used by the Argo init container to place the
// runner in a shared emptyDir without needing cp or a shell in the image.
func copyExecutable(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: kfbridge-step cp SRC DST")
	}
	in, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(args[1]), 0o755); err != nil {
		return err
	}
	tmp := args[1] + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o555)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, args[1])
}

// manifest is written next to a step's archived log; it lets readers check the archive is whole.
type manifest struct {
	RunID     string    `json:"run_id,omitempty"`
	StepID    string    `json:"step_id"`
	StepLabel string    `json:"step_label,omitempty"`
	File      string    `json:"file"`
	FinalSeq  int64     `json:"final_seq"`
	Lines     int64     `json:"lines"`
	Bytes     int64     `json:"bytes"`
	SHA256    string    `json:"sha256"`
	Truncated bool      `json:"truncated"`
	ExitCode  int       `json:"exit_code"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Outputs   []string  `json:"outputs,omitempty"`
	Error     string    `json:"error,omitempty"`
}

func marshalManifest(m manifest) []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// sortedKeys is used for deterministic listings.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// openStore opens the object store named by the flags. Credentials come only from the environment.
func (c *config) openStore(ctx context.Context, getenv func(string) string) (storage.Store, error) {
	return storage.Open(ctx, storage.Config{
		Endpoint: c.endpoint,
		Bucket:   c.bucket,
		Region:   c.region,
		Getenv:   getenv,
	})
}
