package handlers

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// maxPushBody caps one push request; the runner sends at most 256 KiB per request.
const maxPushBody = 4 << 20

// PushAuth checks a step's push token: it is scoped to one run, so a step can never write another
// run's log, and it is not the user's API token.
type PushAuth interface {
	CheckPushToken(runID, stepID, token string) bool
}

// LineAppender stores pushed lines.
type LineAppender interface {
	// AppendNDJSON stores NDJSON lines and returns the highest seq held contiguously.
	AppendNDJSON(runID, stepID string, body []byte) (int64, error)
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
		// One allocation of the announced size: the runner sends up to 256 KiB per request.
		var buf bytes.Buffer
		if r.ContentLength > 0 && r.ContentLength <= maxPushBody {
			buf.Grow(int(r.ContentLength) + 1)
		}
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxPushBody))
		body := buf.Bytes()
		if err != nil {
			Error(log, w, r, fmt.Errorf("%w: read lines: %v", errBadRequest, err))
			return
		}
		last, err := store.AppendNDJSON(runID, stepID, body)
		if err != nil {
			Error(log, w, r, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
		encode(w, http.StatusOK, map[string]int64{"last_seq": last})
	})
}

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
