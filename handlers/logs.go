package handlers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

// LogsConfig configures the REST log endpoints.
type LogsConfig struct {
	Log  *slog.Logger
	Runs RunGetter
	Logs *logstream.Store
	// Archive serves log.txt of finished steps byte for byte; nil renders it from the lines.
	Archive logstream.Archive
	// Heartbeat is the keep-alive period of followed streams (15 s).
	Heartbeat time.Duration
	// TempDir holds the temporary files log.txt is served from (default os.TempDir()).
	TempDir string
}

func (c *LogsConfig) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
}

// StepLog handles GET /api/v1/runs/{id}/steps/{step}/log: NDJSON of lines after ?after_seq= (at
// most ?limit= lines); with follow=1 it streams until the step ends and closes with a step_end
// record. With "Accept: text/event-stream" it answers Server-Sent Events (always following), one
// event per line with id: <seq>, so Last-Event-ID resumes; the last event is "step_end".
func StepLog(cfg LogsConfig) http.Handler {
	cfg.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID, stepID := chi.URLParam(r, "id"), chi.URLParam(r, "step")
		if _, err := cfg.Runs.Get(runID); err != nil {
			Error(cfg.Log, w, r, err)
			return
		}
		q := r.URL.Query()
		sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
		after, err := intParam(q.Get("after_seq"))
		if err != nil {
			Error(cfg.Log, w, r, fmt.Errorf("%w: after_seq: %v", errBadRequest, err))
			return
		}
		if id := r.Header.Get("Last-Event-ID"); sse && id != "" {
			if after, err = intParam(id); err != nil {
				Error(cfg.Log, w, r, fmt.Errorf("%w: Last-Event-ID: %v", errBadRequest, err))
				return
			}
		}
		limit, err := intParam(q.Get("limit"))
		if err != nil {
			Error(cfg.Log, w, r, fmt.Errorf("%w: limit: %v", errBadRequest, err))
			return
		}
		follow := sse || q.Get("follow") == "1" || q.Get("follow") == "true"
		streamLog(cfg, w, r, runID, stepID, after, limit, follow, sse)
	})
}

func intParam(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}

func streamLog(cfg LogsConfig, w http.ResponseWriter, r *http.Request, runID, stepID string, after, limit int64, follow, sse bool) {
	ctx := r.Context()
	store := cfg.Logs
	wake := make(chan struct{}, 1)
	stop := store.Notify(runID, wake)
	defer stop()
	h := w.Header()
	if sse {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if e := store.StepEnd(runID, stepID); e != nil {
		h.Set("X-Kfbridge-Final-Seq", strconv.FormatInt(e.FinalSeq, 10))
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		bw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
	}
	defer flush()
	hb := time.NewTicker(cfg.Heartbeat)
	defer hb.Stop()
	var sent int64
	for {
		ch, err := store.Read(ctx, runID, stepID, after, 256<<10)
		if err != nil && !errors.Is(err, logstream.ErrNoStep) {
			cfg.Log.Warn("read step log", "run_id", runID, "step", stepID, "err", err)
			return
		}
		if ch.Gap != nil {
			if sse {
				fmt.Fprintf(bw, "event: gap\ndata: %s\n\n", mustJSON(ch.Gap))
			} else {
				bw.Write(mustJSON(gapFrame{Type: "gap", Run: runID, Step: stepID, Gap: *ch.Gap}))
				bw.WriteByte('\n')
			}
		}
		for _, rec := range ch.Records {
			if limit > 0 && sent >= limit {
				return
			}
			if sse {
				fmt.Fprintf(bw, "id: %d\ndata: %s\n\n", rec.Seq, rec.JSON)
			} else {
				bw.Write(rec.JSON)
				bw.WriteByte('\n')
			}
			sent++
		}
		after = ch.Next(after)
		if ch.End != nil {
			if follow {
				if sse {
					fmt.Fprintf(bw, "event: step_end\ndata: %s\n\n", mustJSON(ch.End))
				} else {
					bw.Write(mustJSON(stepEndFrame{Type: "step_end", Run: runID, Step: stepID, End: *ch.End}))
					bw.WriteByte('\n')
				}
			}
			return
		}
		if len(ch.Records) > 0 || ch.Gap != nil {
			continue
		}
		// Caught up.
		if !follow {
			return
		}
		if run, err := cfg.Runs.Get(runID); err == nil && runs.Terminal(run.Status) && store.StepEnd(runID, stepID) == nil && stepNeverRan(run, stepID, store) {
			return
		}
		flush()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-hb.C:
			if sse {
				io.WriteString(bw, ": keep-alive\n\n")
			}
		}
	}
}

// stepNeverRan reports whether a step of an ended run has no log to wait for.
func stepNeverRan(run *runs.Run, stepID string, store *logstream.Store) bool {
	for _, s := range run.Steps {
		if s.ID == stepID {
			return s.StartedAt == nil && store.LastSeq(run.ID, stepID) == 0
		}
	}
	return true
}

// StepLogText handles GET /api/v1/runs/{id}/steps/{step}/log.txt: the raw text of a step with
// Range support. A finished step's archived log.txt is served byte for byte (invalid UTF-8
// included); a running step's text is rendered from its lines.
func StepLogText(cfg LogsConfig) http.Handler {
	cfg.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID, stepID := chi.URLParam(r, "id"), chi.URLParam(r, "step")
		if _, err := cfg.Runs.Get(runID); err != nil {
			Error(cfg.Log, w, r, err)
			return
		}
		f, err := os.CreateTemp(cfg.TempDir, "logtxt-*")
		if err != nil {
			Error(cfg.Log, w, r, err)
			return
		}
		os.Remove(f.Name())
		defer f.Close()
		modTime, err := writeLogText(r.Context(), cfg, runID, stepID, f)
		if err != nil {
			Error(cfg.Log, w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if e := cfg.Logs.StepEnd(runID, stepID); e != nil {
			w.Header().Set("X-Kfbridge-Final-Seq", strconv.FormatInt(e.FinalSeq, 10))
		}
		http.ServeContent(w, r, "log.txt", modTime, f)
	})
}

func writeLogText(ctx context.Context, cfg LogsConfig, runID, stepID string, f *os.File) (time.Time, error) {
	if cfg.Archive != nil {
		if _, err := cfg.Archive.Manifest(ctx, runID, stepID); err == nil {
			rc, err := cfg.Archive.Open(ctx, runID, stepID, logstream.LogTextName)
			if err == nil {
				defer rc.Close()
				if _, err := io.Copy(f, rc); err != nil {
					return time.Time{}, fmt.Errorf("read archived log.txt: %w", err)
				}
				return time.Time{}, nil
			}
		}
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	var after int64
	found := false
	for {
		ch, err := cfg.Logs.Read(ctx, runID, stepID, after, 1<<20)
		if errors.Is(err, logstream.ErrNoStep) {
			break
		}
		if err != nil {
			return time.Time{}, err
		}
		found = true
		for _, rec := range ch.Records {
			l, err := rec.Decode()
			if err != nil {
				return time.Time{}, fmt.Errorf("decode line %d: %w", rec.Seq, err)
			}
			bw.WriteString(l.Text)
			if !l.Partial {
				bw.WriteByte('\n')
			}
		}
		next := ch.Next(after)
		if next == after {
			break
		}
		after = next
	}
	if !found {
		return time.Time{}, fmt.Errorf("step %q: %w", stepID, runs.ErrNotFound)
	}
	return time.Time{}, bw.Flush()
}

// PushEnd handles POST /api/v1/runs/{id}/steps/{step}/end: the step runner's end record, sent
// after the service acknowledged its last line.
func PushEnd(log *slog.Logger, auth PushAuth, store *logstream.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID, stepID := chi.URLParam(r, "id"), chi.URLParam(r, "step")
		if !auth.CheckPushToken(runID, stepID, bearer(r)) {
			Error(log, w, r, fmt.Errorf("%w: push token not valid for this run and step", errUnauthorized))
			return
		}
		var e logstream.End
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&e); err != nil || e.FinalSeq < 0 {
			Error(log, w, r, fmt.Errorf("%w: not an end record", errBadRequest))
			return
		}
		e.Incomplete = false
		store.SetEnd(runID, stepID, e)
		encode(w, http.StatusOK, map[string]int64{"last_seq": store.LastSeq(runID, stepID)})
	})
}
