package kfp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error kinds. Every error the client returns for a failed KFP call is an *APIError whose Is method
// matches exactly one of these, so callers branch with errors.Is(err, kfp.ErrNotFound) without
// caring which API version or error-body shape produced it.
var (
	// ErrNotFound: the pipeline, version, experiment or run does not exist (HTTP 404, gRPC NotFound).
	ErrNotFound = errors.New("kfp: not found")
	// ErrConflict: the name is taken (HTTP 409, gRPC AlreadyExists, or KFP 1.x's HTTP 500
	// "already exist" on upload).
	ErrConflict = errors.New("kfp: already exists")
	// ErrUnauthorized: no or expired credentials (HTTP 401, a redirect to a login page, gRPC
	// Unauthenticated, a failed Dex login).
	ErrUnauthorized = errors.New("kfp: unauthorized")
	// ErrForbidden: authenticated but not allowed (HTTP 403, gRPC PermissionDenied).
	ErrForbidden = errors.New("kfp: forbidden")
	// ErrInvalid: KFP rejected the request (HTTP 400/412/422, gRPC InvalidArgument or
	// FailedPrecondition), or the client refused to send it (e.g. a file over the upload cap).
	ErrInvalid = errors.New("kfp: invalid request")
	// ErrUpstream: KFP is unreachable, timed out, answered 5xx, or answered something that is not
	// the KFP API (e.g. an HTML page because api_endpoint is wrong).
	ErrUpstream = errors.New("kfp: upstream failure")
)

// APIError describes one failed KFP operation.
type APIError struct {
	// Op names the client operation, e.g. "create run".
	Op string
	// Method and Endpoint are the HTTP method and full URL (without query) of the last attempt.
	Method   string
	Endpoint string
	// StatusCode is the HTTP status of the last response, 0 if there was none.
	StatusCode int
	// Code is the gRPC status code from the error body, 0 if absent.
	Code int
	// Message is KFP's message (or the transport error's text).
	Message string
	// Details is KFP's error_details when the body carried one.
	Details string
	// Attempts is how many requests were sent (more than 1 after transient failures).
	Attempts int
	// Ambiguous is set when a create may have taken effect although the call failed (the answer
	// was lost and looking the object up failed too); callers must look before re-sending.
	Ambiguous bool
	// Kind is one of the Err* sentinels.
	Kind error
	// Cause is the underlying transport error, if any.
	Cause error
}

// Error reads like "kfp: create run: POST http://h/apis/v1beta1/runs: 409 Conflict: name taken".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("kfp: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Method)
	b.WriteString(" ")
	b.WriteString(e.Endpoint)
	b.WriteString(": ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Message != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Message)
	if e.Details != "" && !strings.Contains(e.Message, e.Details) {
		b.WriteString(" (")
		b.WriteString(truncate(e.Details, 300))
		b.WriteString(")")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " [after %d attempts]", e.Attempts)
	}
	return b.String()
}

// Is reports whether target is the error's kind.
func (e *APIError) Is(target error) bool { return target != nil && target == e.Kind }

// Unwrap returns the transport error, so errors.Is(err, context.DeadlineExceeded) etc. work.
func (e *APIError) Unwrap() error { return e.Cause }

// errorBody is the union of the three error shapes KFP writes: grpc-gateway v1
// {error, message, code, details}, googleRpcStatus {code, message, details} and the bare
// api.Error {error_message, error_details} of the hand-written upload handlers.
type errorBody struct {
	Error        string            `json:"error"`
	Message      string            `json:"message"`
	Code         int               `json:"code"`
	ErrorMessage string            `json:"error_message"`
	ErrorDetails string            `json:"error_details"`
	Details      []json.RawMessage `json:"details"`
}

// parseErrorBody extracts message, details and gRPC code from a KFP error body. ok is false when
// the body is not one of KFP's JSON shapes (e.g. an HTML page from a proxy).
func parseErrorBody(body []byte) (msg, details string, code int, ok bool) {
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		return "", "", 0, false
	}
	msg = firstNonEmpty(eb.ErrorMessage, eb.Message, eb.Error)
	details = eb.ErrorDetails
	for _, d := range eb.Details {
		var inner struct {
			ErrorMessage string `json:"error_message"`
			ErrorDetails string `json:"error_details"`
		}
		if json.Unmarshal(d, &inner) == nil {
			if msg == "" {
				msg = inner.ErrorMessage
			}
			if details == "" {
				details = inner.ErrorDetails
			}
		}
	}
	if msg == "" && details == "" && eb.Code == 0 {
		return "", "", 0, false
	}
	return msg, details, eb.Code, true
}

// gRPC status codes that grpc-gateway puts in error bodies.
const (
	grpcInvalidArgument    = 3
	grpcNotFound           = 5
	grpcAlreadyExists      = 6
	grpcPermissionDenied   = 7
	grpcFailedPrecondition = 9
	grpcUnavailable        = 14
	grpcUnauthenticated    = 16
)

// classify maps an HTTP status (and gRPC code and message, when the status alone is ambiguous)
// to an error kind.
func classify(status, code int, msg, details string) error {
	switch code {
	case grpcNotFound:
		return ErrNotFound
	case grpcAlreadyExists:
		return ErrConflict
	case grpcPermissionDenied:
		return ErrForbidden
	case grpcUnauthenticated:
		return ErrUnauthorized
	case grpcInvalidArgument, grpcFailedPrecondition:
		return ErrInvalid
	}
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusConflict:
		return ErrConflict
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status >= 300 && status < 400:
		// A redirect from the API means an auth proxy wants a browser login.
		return ErrUnauthorized
	case status >= 500:
		// KFP 1.x reports a duplicate pipeline name as 500 "The name X already exist".
		if isAlreadyExists(msg) || isAlreadyExists(details) {
			return ErrConflict
		}
		return ErrUpstream
	case status >= 400:
		return ErrInvalid
	}
	return ErrUpstream
}

func isAlreadyExists(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "already exist")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
