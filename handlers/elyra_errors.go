package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// ElyraProblem is the error body of Elyra's server ({reason, message, timestamp}); validation
// failures add the issues. Elyra's frontend shows message, and lists the issues when present.
type ElyraProblem struct {
	Reason    string           `json:"reason"`
	Message   string           `json:"message"`
	Timestamp string           `json:"timestamp"`
	Issues    []pipeline.Issue `json:"issues,omitempty"`
}

// elyraTimeFormat is Elyra's timestamp layout, "YYYY-MM-DD HH:MM:SS".
const elyraTimeFormat = "2006-01-02 15:04:05"

// elyraNow is the clock of error timestamps (UTC).
var elyraNow = func() time.Time { return time.Now().UTC() }

// elyraStatus is status(err) with Elyra's one difference: changing the built-in local runtime is
// "not permitted" (403) there, a conflict (409) in kfbridge's own API.
func elyraStatus(err error) int {
	if errors.Is(err, runs.ErrBuiltin) {
		return http.StatusForbidden
	}
	return status(err)
}

// ElyraError writes err in Elyra's error shape, with the HTTP reason phrase as reason. The status
// comes from the service's one error mapping. Server errors are logged and shown only as a
// generic message, like Error does.
func ElyraError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	code := elyraStatus(err)
	p := ElyraProblem{Reason: http.StatusText(code), Message: err.Error(), Timestamp: elyraNow().Format(elyraTimeFormat)}
	var ie *issuesError
	if errors.As(err, &ie) {
		// Elyra's fixed wording for a pipeline that fails validation; the issues say why.
		p.Message, p.Issues = "Errors found in pipeline", ie.issues
	}
	if code >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code != http.StatusBadGateway {
			// As Error: a 502 names the system that failed (KFP, a runtime's object store) and what
			// it said, which the user needs to fix a runtime configuration (Elyra shows its
			// processor's errors the same way); other 5xx are kfbridge's own.
			p.Message = "internal error; see the kfbridge server log"
		}
	}
	if code == 499 {
		p.Reason = "Client Closed Request"
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	encode(w, code, p)
}

// elyraNotFound is the error of a route kfbridge does not serve under /elyra.
func elyraNotFound(r *http.Request) error {
	return fmt.Errorf("%w: no Elyra endpoint %s %s", runs.ErrNotFound, r.Method, r.URL.Path)
}

// ElyraNotFound answers unknown Elyra paths in Elyra's error shape.
func ElyraNotFound(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ElyraError(log, w, r, elyraNotFound(r)) })
}

// ElyraMethodNotAllowed answers a known Elyra path with a method it does not take, in Elyra's
// error shape.
func ElyraMethodNotAllowed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		encode(w, http.StatusMethodNotAllowed, ElyraProblem{Reason: http.StatusText(http.StatusMethodNotAllowed),
			Message: fmt.Sprintf("%s is not supported on %s", r.Method, r.URL.Path), Timestamp: elyraNow().Format(elyraTimeFormat)})
	})
}
