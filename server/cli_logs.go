package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

// logsOptions are the flags of `kfbridge logs`.
type logsOptions struct {
	follow   bool
	afterSeq int64
	jsonOut  bool
	noColor  bool
}

// logsCmd implements `kfbridge logs RUN [STEP] [-f] [--after-seq N] [--json] [--no-color]`: it
// prints a step's (or every step's) log, follows it live with -f, resumes by itself after a
// dropped connection, and exits with the step's exit code (or 0/1 for the run's result).
func logsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kfbridge logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge logs RUN [STEP] [-f] [--after-seq N] [--json] [--no-color]")
		fs.PrintDefaults()
	}
	var o logsOptions
	fs.BoolVar(&o.follow, "f", false, "follow: keep printing lines until the step (or run) ends")
	fs.BoolVar(&o.follow, "follow", false, "same as -f")
	fs.Int64Var(&o.afterSeq, "after-seq", 0, "start after this line seq (of STEP, or of every step)")
	fs.BoolVar(&o.jsonOut, "json", false, "print NDJSON line objects (and step_end/run records) instead of text")
	fs.BoolVar(&o.noColor, "no-color", false, "strip ANSI escape sequences")
	srv := fs.String("server", envOr(getenv, "KFBRIDGE_SERVER", "http://127.0.0.1:8765"), "kfbridge server URL (env KFBRIDGE_SERVER)")
	token := fs.String("token", getenv("KFBRIDGE_TOKEN"), "API token (env KFBRIDGE_TOKEN)")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &exitError{code: 2}
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return &exitError{code: 2}
	}
	if *token == "" {
		return usageErr("an API token is required: pass --token or set KFBRIDGE_TOKEN")
	}
	c := newClient(*srv, *token)
	run, err := c.getRun(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	p := &logPrinter{w: bufio.NewWriter(stdout), o: o, labels: map[string]string{}}
	defer p.w.Flush()
	for _, s := range run.Steps {
		p.labels[s.ID] = s.Label
	}
	if len(pos) == 2 {
		step := findStep(run, pos[1])
		if step == nil {
			return usageErr("run %s has no step %q", run.ID, pos[1])
		}
		return stepLogs(ctx, c, run, step, o, p)
	}
	return runLogs(ctx, c, run, o, p)
}

func findStep(run *runs.Run, key string) *runs.Step {
	for _, s := range run.Steps {
		if s.ID == key {
			return s
		}
	}
	for _, s := range run.Steps {
		if s.Label == key || strings.TrimSuffix(s.Label, ".py") == key {
			return s
		}
	}
	return nil
}

// logPrinter writes lines as text (with a [label] prefix when several steps are shown) or NDJSON.
type logPrinter struct {
	w      *bufio.Writer
	o      logsOptions
	labels map[string]string
	prefix bool
}

var ansiRE = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])`)

func (p *logPrinter) line(step string, l logstream.Line) {
	text := l.Text
	if p.o.noColor {
		text = ansiRE.ReplaceAllString(text, "")
	}
	if p.o.jsonOut {
		b, _ := json.Marshal(map[string]any{"step": step, "step_label": p.labels[step], "seq": l.Seq, "ts": l.TS,
			"stream": l.Stream, "text": text, "partial": l.Partial})
		p.w.Write(append(b, '\n'))
		return
	}
	if p.prefix {
		fmt.Fprintf(p.w, "[%s] ", p.labels[step])
	}
	p.w.WriteString(text)
	if !l.Partial {
		p.w.WriteByte('\n')
	}
}

// gap reports lines the server cannot deliver, in the output itself so it is never silent.
func (p *logPrinter) gap(step string, from, to int64, reason string) {
	if p.o.jsonOut {
		p.record(map[string]any{"type": "gap", "step": step, "from_seq": from, "to_seq": to, "reason": reason})
		return
	}
	if p.prefix {
		fmt.Fprintf(p.w, "[%s] ", p.labels[step])
	}
	fmt.Fprintf(p.w, "[kfbridge: lines %d-%d are not available (%s)]\n", from, to, reason)
}

func (p *logPrinter) record(v any) {
	if p.o.jsonOut {
		b, _ := json.Marshal(v)
		p.w.Write(append(b, '\n'))
	}
}

// stepLogs prints one step over the REST log endpoint; with -f it follows the NDJSON stream and
// reconnects after the last seq it printed until the step_end record arrives.
func stepLogs(ctx context.Context, c *client, run *runs.Run, step *runs.Step, o logsOptions, p *logPrinter) error {
	after := o.afterSeq
	failures := 0
	for {
		end, n, err := c.streamStepLog(ctx, run.ID, step.ID, after, o.follow, func(l logstream.Line) {
			p.line(step.ID, l)
			after = l.Seq
		}, func(from, to int64, reason string) {
			p.gap(step.ID, from, to, reason)
			after = max(after, to)
		})
		p.w.Flush()
		if err == nil && end != nil {
			p.record(map[string]any{"type": "step_end", "step": step.ID, "final_seq": end.FinalSeq, "exit_code": end.ExitCode, "lines": end.Lines})
			return exitWith(end.ExitCode)
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 {
			return fmt.Errorf("logs: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			// The stream ended without a step_end: not following, or the step never ran.
			cur, gerr := c.getRun(ctx, run.ID)
			if gerr == nil {
				if s := findStep(cur, step.ID); s != nil && (!o.follow || runs.Terminal(s.Status)) {
					if !runs.Terminal(s.Status) {
						return nil
					}
					if s.ExitCode != nil {
						return exitWith(*s.ExitCode)
					}
					if s.Status == runs.StatusSucceeded {
						return nil
					}
					return &exitError{code: 1}
				}
			}
		}
		if n > 0 {
			failures = 0
		}
		if failures >= 30 {
			return fmt.Errorf("logs: %v", err)
		}
		sleepCtx(ctx, followBackoff(failures))
		failures++
	}
}

func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	if code < 0 || code > 255 {
		code = 1
	}
	return &exitError{code: code}
}

// streamStepLog reads GET …/log?after_seq=N[&follow=1], calling fn for every line and gap (if not
// nil) for lines the server cannot deliver. It returns the
// step_end record if the stream carried one, and how many lines it read.
func (c *client) streamStepLog(ctx context.Context, runID, stepID string, after int64, follow bool, fn func(logstream.Line), gap func(from, to int64, reason string)) (*logstream.End, int, error) {
	q := url.Values{"after_seq": {strconv.FormatInt(after, 10)}}
	if follow {
		q.Set("follow", "1")
	}
	u := c.base + "/api/v1/runs/" + url.PathEscape(runID) + "/steps/" + url.PathEscape(stepID) + "/log?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	// A followed stream is long-lived: no client timeout, the context ends it.
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ae := &apiError{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, ae) != nil || ae.Detail == "" {
			ae.Detail = strings.TrimSpace(string(b))
		}
		return nil, 0, ae
	}
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	n := 0
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 1 {
			var rec struct {
				Type string `json:"type"`
				logstream.Line
				logstream.End
				FromSeq int64  `json:"from_seq"`
				ToSeq   int64  `json:"to_seq"`
				Reason  string `json:"reason"`
			}
			if jerr := json.Unmarshal(b, &rec); jerr != nil {
				return nil, n, fmt.Errorf("decode log line: %w", jerr)
			}
			switch rec.Type {
			case "step_end":
				e := rec.End
				return &e, n, nil
			case "gap":
				if gap != nil {
					gap(rec.FromSeq, rec.ToSeq, rec.Reason)
				}
			default:
				fn(rec.Line)
				n++
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, n, nil
		}
		if err != nil {
			return nil, n, err
		}
	}
}

// runLogs prints every step of a run: with -f live over the websocket (resuming by itself),
// otherwise what each step has logged so far, step by step.
func runLogs(ctx context.Context, c *client, run *runs.Run, o logsOptions, p *logPrinter) error {
	p.prefix = true
	if o.follow {
		final, err := c.follow(ctx, run.ID, func(f wsFrame) {
			switch f.Type {
			case "lines":
				for _, l := range f.Lines {
					if l.Seq > o.afterSeq {
						p.line(f.Step, l)
					}
				}
				p.w.Flush()
			case "gap":
				p.gap(f.Step, f.FromSeq, f.ToSeq, f.Reason)
			case "step_end":
				p.record(map[string]any{"type": "step_end", "step": f.Step, "final_seq": f.FinalSeq, "exit_code": f.ExitCode, "lines": f.LineCount})
			case logstream.EventRun:
				p.record(map[string]any{"type": "run", "status": f.Status, "message": f.Message})
			}
		})
		if err != nil {
			return err
		}
		if final != runs.StatusSucceeded {
			return &exitError{code: 1}
		}
		return nil
	}
	for _, s := range run.Steps {
		after := o.afterSeq
		for attempt := 0; ; attempt++ {
			_, _, err := c.streamStepLog(ctx, run.ID, s.ID, after, false, func(l logstream.Line) {
				p.line(s.ID, l)
				after = l.Seq
			}, func(from, to int64, reason string) {
				p.gap(s.ID, from, to, reason)
				after = max(after, to)
			})
			if err == nil {
				break
			}
			var ae *apiError
			if errors.As(err, &ae) || attempt >= 5 || ctx.Err() != nil {
				return fmt.Errorf("logs of step %s: %w", s.Label, err)
			}
			sleepCtx(ctx, followBackoff(attempt))
		}
	}
	p.w.Flush()
	switch {
	case run.Status == runs.StatusSucceeded || !runs.Terminal(run.Status):
		return nil
	default:
		return &exitError{code: 1}
	}
}
