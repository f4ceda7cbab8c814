package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/logstream"
)

// maxPushBody caps one push request; the runner sends at most 512 KiB per request.
const maxPushBody = 4 << 20

// PushAuth checks a step's push token: it is scoped to one run, so a step can never write another
// run's log, and it is not the user's API token.
type PushAuth interface {
	CheckPushToken(runID, stepID, token string) bool
}

// LineAppender stores pushed lines.
type LineAppender interface {
	// AppendNDJSON stores NDJSON lines and returns the highest seq held contiguously.
	// A batch that starts after a hole waits briefly for the batches before it (the runner
	// pipelines pushes), at most until ctx is done. body comes from logstream.GetBody; the store
	// owns it from the call on.
	AppendPooled(ctx context.Context, runID, stepID string, body []byte) (int64, error)
}

// PushLines handles POST /api/v1/runs/{id}/steps/{step}/lines: the step runner's NDJSON lines. It
// answers {"last_seq": N}, the highest seq held contiguously, so the runner knows what to resend.
// Lines in the runner's canonical encoding are validated and stored as they are, never re-encoded.
func PushLines(log *slog.Logger, auth PushAuth, store LineAppender) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID, stepID := chi.URLParam(r, "id"), chi.URLParam(r, "step")
		if !auth.CheckPushToken(runID, stepID, bearer(r)) {
			Error(log, w, r, fmt.Errorf("%w: push token not valid for this run and step", errUnauthorized))
			return
		}
		body, err := readPushBody(w, r)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			Error(log, w, r, fmt.Errorf("%w: push body over %d bytes", errTooLarge, maxPushBody))
			return
		}
		if err != nil {
			Error(log, w, r, fmt.Errorf("%w: read lines: %v", errBadRequest, err))
			return
		}
		last, err := store.AppendPooled(r.Context(), runID, stepID, body)
		if err != nil {
			Error(log, w, r, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
		encode(w, http.StatusOK, map[string]int64{"last_seq": last})
	})
}

// readPushBody reads a push request's body (with a Content-Length or chunked) into a buffer from
// the store's pool (the store keeps
// it while its lines are in memory, then reuses it: a fresh buffer would be zeroed first, which
// costs as much as validating the lines). A body of announced length is read into exactly that
// much memory, without the regrowth a bytes.Buffer does to look for EOF.
func readPushBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, maxPushBody)
	if n := r.ContentLength; n > 0 && n <= maxPushBody {
		buf := logstream.GetBody(int(n))
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		// The body must end where it said it would (net/http enforces it; this keeps the
		// contract explicit).
		var one [1]byte
		if k, _ := body.Read(one[:]); k != 0 {
			return nil, fmt.Errorf("body longer than its Content-Length")
		}
		return buf, nil
	}
	// Unknown length (the runner sends its batches chunked): read into pooled buffers, moving to
	// the next size only if one fills up (a runner batch fits the first).
	buf := logstream.GetBody(pushChunkedFirst)
	n := 0
	for {
		k, err := body.Read(buf[n:])
		n += k
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(buf) {
			bigger := logstream.GetBody(2 * len(buf))
			copy(bigger, buf)
			buf = bigger
		}
	}
}

// pushChunkedFirst is the buffer a push of unknown length is read into first: the runner's
// largest batch.
const pushChunkedFirst = 512 << 10

// bearer returns the token of an "Authorization: Bearer T" (or Jupyter's "token T") header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	for _, scheme := range []string{"Bearer ", "bearer ", "token ", "Token "} {
		if strings.HasPrefix(h, scheme) {
			return strings.TrimSpace(h[len(scheme):])
		}
	}
	return ""
}
