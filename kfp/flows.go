package kfp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"time"
)

// Flows shared by the v1beta1 and v2beta1 implementations. The two APIs differ in paths, wire
// shapes and filter encoding; the steps around them (look up before re-creating, find by exact
// name, page through runs) are the same and live here, parameterized by what differs.

// filterEncoder encodes a one-predicate Filter: v1FilterEquals or v2FilterEquals (the versions
// name the operator field differently).
type filterEncoder func(key, value string) string

// getCall is a GET of path with query q whose answer is decoded into out.
func getCall(op, path string, q url.Values, out any) *call {
	cl, _ := jsonCall(op, http.MethodGet, path, nil, out) // no body: cannot fail
	cl.query = q
	return cl
}

// findQuery asks for the first page of a list filtered to key == value. The page is small: the
// filter does the work, and the caller still insists on an exact match.
func findQuery(filter filterEncoder, key, value string) url.Values {
	return url.Values{"filter": {filter(key, value)}, "page_size": {"10"}}
}

// findNamed lists path with q into a fresh L, picks the first item whose name(item) is want, and
// answers ErrNotFound with missing when there is none.
func findNamed[L, T any](ctx context.Context, c *Client, op, path string, q url.Values,
	items func(*L) []T, name func(*T) string, want, missing string) (*T, error) {
	var out L
	cl := getCall(op, path, q, &out)
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	list := items(&out)
	for i := range list {
		if name(&list[i]) == want {
			return &list[i], nil
		}
	}
	return nil, notFound(op, c.endpoint(cl), missing)
}

// lookupFound turns a find into a create call's lookup: ErrNotFound means the earlier attempt had
// no effect; a found object is what the create made, and fill stores it as the call's result.
func lookupFound[T any](find func(context.Context) (T, error), fill func(T)) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		x, err := find(ctx)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		fill(x)
		return true, nil
	}
}

// runLister is listRuns of one API version.
type runLister func(ctx context.Context, r ListRunsRequest, namespace string) ([]Run, string, error)

// createdRunLookup is a create run call's lookup: a run named r.Name in its experiment (or the
// namespace) created since now, i.e. by an earlier attempt of this call; fill stores it as the
// call's result. Call it when the call is built, so "since" is when the call started.
func createdRunLookup(list runLister, r RunRequest, namespace string, fill func(*Run)) func(context.Context) (bool, error) {
	started := time.Now()
	return func(ctx context.Context) (bool, error) {
		runs, _, err := list(ctx, ListRunsRequest{ExperimentID: r.ExperimentID, Name: r.Name, PageSize: 20}, namespace)
		if err != nil {
			return false, err
		}
		if run := pickCreated(runs, r.Name, started); run != nil {
			fill(run)
			return true, nil
		}
		return false, nil
	}
}

// pickCreated returns the run named name that an earlier attempt of this call created: created no
// earlier than the call started (minus slack for clock skew between client and server).
func pickCreated(runs []Run, name string, started time.Time) *Run {
	for i := range runs {
		r := &runs[i]
		if r.Name != name {
			continue
		}
		if r.CreatedAt.IsZero() || !r.CreatedAt.Before(started.Add(-2*time.Minute)) {
			return r
		}
	}
	return nil
}

// listRunsQuery adds r's name filter (on nameKey: v1 "name", v2 "display_name"), paging and
// sorting to q, which already holds the version's experiment/namespace scope.
func listRunsQuery(q url.Values, r ListRunsRequest, filter filterEncoder, nameKey string) url.Values {
	if r.Name != "" {
		q.Set("filter", filter(nameKey, r.Name))
	}
	if r.PageSize > 0 {
		q.Set("page_size", fmt.Sprint(r.PageSize))
	}
	if r.PageToken != "" {
		q.Set("page_token", r.PageToken)
	}
	if r.SortBy != "" {
		q.Set("sort_by", r.SortBy)
	}
	return q
}

// listRunsPage runs a list runs call into a fresh L and converts its runs with conv.
func listRunsPage[L, W any](ctx context.Context, c *Client, path string, q url.Values,
	runs func(*L) ([]W, string), conv func(W) Run) ([]Run, string, error) {
	var out L
	if err := c.do(ctx, getCall("list runs", path, q, &out)); err != nil {
		return nil, "", err
	}
	items, next := runs(&out)
	res := make([]Run, 0, len(items))
	for _, x := range items {
		res = append(res, conv(x))
	}
	return res, next, nil
}

// uploadCall builds the multipart request KFP's upload handlers read: one file part named
// "uploadfile" whose filename ends in .yaml (the server picks the parser by suffix).
func uploadCall(op, path string, q url.Values, r UploadRequest, out any) (*call, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="uploadfile"; filename=%q`, r.Filename))
	h.Set("Content-Type", "application/octet-stream")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	if _, err := pw.Write(r.Content); err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	return &call{op: op, method: http.MethodPost, path: path, query: q, body: buf.Bytes(), ctype: mw.FormDataContentType(), out: out}, nil
}

// uploadQuery is the query both versions' upload endpoints read: name and optional description.
func uploadQuery(r UploadRequest) url.Values {
	q := url.Values{"name": {r.Name}}
	if r.Description != "" {
		q.Set("description", r.Description)
	}
	return q
}

// compactJSON compacts an inline pipeline document (what names it in the error) for create run.
func (c *Client) compactJSON(what string, doc []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return nil, invalid("create run", c.base.String(), what+": "+err.Error())
	}
	return b.Bytes(), nil
}

// addNode records one normalized node/task: in AllNodes always, in Steps when it ran user code.
func (st *RunStatus) addNode(s StepStatus, userStep bool) {
	st.AllNodes = append(st.AllNodes, s)
	if userStep {
		st.Steps = append(st.Steps, s)
	}
}

// sortNodes puts Steps and AllNodes in start-time-then-name order.
func (st *RunStatus) sortNodes() {
	sortSteps(st.Steps)
	sortSteps(st.AllNodes)
}

// notFound is the ErrNotFound of a find whose list had no exact match.
func notFound(op, endpoint, msg string) error {
	return &APIError{Op: op, Method: http.MethodGet, Endpoint: endpoint, StatusCode: 0, Message: msg, Kind: ErrNotFound}
}
