// Package handlers holds kfbridge's HTTP and websocket handlers. Each handler is made by a function
// that takes only the dependencies it uses and returns an http.Handler; request decoding, response
// encoding and the one mapping from errors to HTTP statuses live here too.
package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// Problem is an RFC 9457 problem+json body. Validation failures carry Elyra-shaped issues.
type Problem struct {
	Type   string           `json:"type"`
	Title  string           `json:"title"`
	Status int              `json:"status"`
	Detail string           `json:"detail,omitempty"`
	Issues []pipeline.Issue `json:"issues,omitempty"`
}

// Error kinds of this package, for failures found while decoding a request.
var (
	errBadRequest   = errors.New("bad request")
	errUnauthorized = errors.New("unauthorized")
	errForbidden    = errors.New("forbidden")
	errTooLarge     = errors.New("request too large")
)

// issuesError carries validation issues that make a request fail.
type issuesError struct {
	msg    string
	issues []pipeline.Issue
}

func (e *issuesError) Error() string { return e.msg }

// status maps an error to its HTTP status. It is the only such mapping in the service.
func status(err error) int {
	var ie *issuesError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ie), errors.Is(err, errBadRequest), errors.Is(err, runs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, runs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, runs.ErrConflict):
		return http.StatusConflict
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, runs.ErrUpstream):
		return http.StatusBadGateway
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

// Error writes err as problem+json. Server errors are logged and shown only as a generic message,
// so internal details (paths, upstream answers) do not leak; client errors carry their message.
func Error(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	p := Problem{Type: "about:blank", Title: http.StatusText(code), Status: code, Detail: err.Error()}
	var ie *issuesError
	if errors.As(err, &ie) {
		p.Issues = ie.issues
	}
	if code >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code != http.StatusBadGateway {
			// A 502 names the system that failed (KFP, a runtime's object store) and what it said,
			// which the user needs to fix a runtime configuration; other 5xx are kfbridge's own.
			p.Detail = "internal error; see the kfbridge server log"
		}
	}
	if code == 499 {
		p.Title = "Client Closed Request"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	writeJSON(w, p)
}
