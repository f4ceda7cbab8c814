// Package kfp is a small typed client for the Kubeflow Pipelines REST API, v1beta1 (KFP 1.x) and
// v2beta1 (KFP 2.x), written against the official swagger (the upstream Go client cannot be
// fetched here). It offers what kfbridge needs to submit and watch runs: healthz, pipeline upload
// and upload_version, pipeline/experiment lookup, experiments, runs create/get/list/terminate,
// and a version-neutral run status with per-step states.
//
// Every call takes a context. Failures come back as *APIError matching one of the Err* kinds.
// Transient failures (connection refused, resets, timeouts, 502/503/504/429) are retried a bounded
// number of times with backoff; requests that create something are never blindly re-sent: after
// an ambiguous failure the client first looks up whether the earlier attempt took effect.
package kfp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a Client. The zero value is usable: API version auto, no auth, default
// timeouts and retries.
type Options struct {
	// APIVersion is V1Beta1, V2Beta1 or Auto (also ""): Auto asks v2beta1's healthz and falls
	// back to v1beta1 when that path does not exist.
	APIVersion string
	// Namespace is the user's profile namespace (Elyra user_namespace). Required when the server
	// is multi-user; ignored (not sent) when it is single-user.
	Namespace string
	// Auth selects the credentials.
	Auth Auth
	// CABundle is a PEM file of extra CAs trusted for TLS; default $KF_PIPELINES_SSL_SA_CERTS.
	CABundle string
	// RequestTimeout bounds one HTTP attempt; default 30s.
	RequestTimeout time.Duration
	// Retry bounds retries on transient failures.
	Retry RetryPolicy
	// UserAgent is sent on every request; default "kfbridge".
	UserAgent string
	// Transport replaces the HTTP transport (tests); CABundle is then ignored.
	Transport http.RoundTripper
	// MaxResponseBytes bounds a response body; default 128 MiB (a large run's workflow_manifest).
	MaxResponseBytes int64
}

// RetryPolicy bounds retries. Zero fields take the defaults.
type RetryPolicy struct {
	// MaxAttempts counts every request sent for one call, first included; default 4. 1 disables
	// retries.
	MaxAttempts int
	// InitialBackoff is the first wait, doubled per retry up to MaxBackoff; defaults 250ms and 4s.
	// A ±20% jitter spreads clients that failed together.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// LookupDelay is the least wait before looking up the outcome of an ambiguous create (the
	// server may still be processing it); default 1s.
	LookupDelay time.Duration
}

// MaxUploadBytes is KFP's upload cap (the server reads at most 32 MiB of the file part).
const MaxUploadBytes = 32 << 20

// Client talks to one KFP API endpoint. It is safe for concurrent use.
type Client struct {
	base *url.URL
	opts Options
	hc   *http.Client
	auth authenticator

	mu      sync.Mutex
	version string // resolved API version
	health  *Healthz
}

// New returns a client for the KFP API at baseURL, e.g. "http://ml-pipeline.kubeflow:8888" or
// "https://kubeflow.example.com/pipeline" (the /apis/... paths are appended). It does no I/O;
// the API version (Auto) and multi-user mode are discovered on the first call that needs them.
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(baseURL), "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("kfp: api endpoint %q must be an http(s) URL: %w", baseURL, ErrInvalid)
	}
	u.RawQuery, u.Fragment = "", ""
	switch opts.APIVersion {
	case "", Auto:
		opts.APIVersion = Auto
	case V1Beta1, V2Beta1:
	case "v1", "V1":
		opts.APIVersion = V1Beta1
	case "v2", "V2":
		opts.APIVersion = V2Beta1
	default:
		return nil, fmt.Errorf("kfp: api version %q: want %s, %s or %s: %w", opts.APIVersion, V1Beta1, V2Beta1, Auto, ErrInvalid)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.Retry.MaxAttempts <= 0 {
		opts.Retry.MaxAttempts = 4
	}
	if opts.Retry.InitialBackoff <= 0 {
		opts.Retry.InitialBackoff = 250 * time.Millisecond
	}
	if opts.Retry.MaxBackoff <= 0 {
		opts.Retry.MaxBackoff = 4 * time.Second
	}
	if opts.Retry.LookupDelay <= 0 {
		opts.Retry.LookupDelay = time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "kfbridge"
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 128 << 20
	}
	rt := opts.Transport
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tc, err := tlsConfig(opts.CABundle)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			tr.TLSClientConfig = tc
		}
		rt = tr
	}
	auth, err := newAuthenticator(opts.Auth, u, rt)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base: u,
		opts: opts,
		auth: auth,
		hc: &http.Client{
			Transport: rt,
			// A redirect from the API is an auth proxy sending us to a login page: surface it
			// (and re-login) instead of following it to an HTML form.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if opts.APIVersion != Auto {
		c.version = opts.APIVersion
	}
	return c, nil
}

// BaseURL is the endpoint the client was created for.
func (c *Client) BaseURL() string { return c.base.String() }

// RunURL is the KFP UI link of a run: endpoint (the public API endpoint when there is one) +
// "/#/runs/details/<id>", as Elyra builds it.
func RunURL(endpoint, runID string) string {
	return strings.TrimRight(endpoint, "/") + "/#/runs/details/" + url.PathEscape(runID)
}

// impl is one API version's implementation of the operations.
type impl interface {
	healthz(ctx context.Context) (Healthz, error)
	uploadPipeline(ctx context.Context, r UploadRequest) (*Pipeline, *PipelineVersion, error)
	uploadVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error)
	findPipeline(ctx context.Context, name, namespace string) (*Pipeline, error)
	findVersion(ctx context.Context, pipelineID, name string) (*PipelineVersion, error)
	createExperiment(ctx context.Context, name, description, namespace string) (*Experiment, error)
	findExperiment(ctx context.Context, name, namespace string) (*Experiment, error)
	createRun(ctx context.Context, r RunRequest, namespace string) (*Run, error)
	getRun(ctx context.Context, id string) (*RunDetail, error)
	listRuns(ctx context.Context, r ListRunsRequest, namespace string) ([]Run, string, error)
	terminateRun(ctx context.Context, id string) error
}

func (c *Client) implFor(v string) impl {
	if v == V2Beta1 {
		return v2api{c}
	}
	return v1api{c}
}

// APIVersion resolves (once) and returns the API version in use.
func (c *Client) APIVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != "" {
		return v, nil
	}
	h, err := v2api{c}.healthz(ctx)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("kfp: detect api version: %w", err)
		}
		if h, err = (v1api{c}).healthz(ctx); err != nil {
			return "", fmt.Errorf("kfp: detect api version: %w", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version = h.APIVersion
	c.health = &h
	return c.version, nil
}

func (c *Client) api(ctx context.Context) (impl, error) {
	v, err := c.APIVersion(ctx)
	if err != nil {
		return nil, err
	}
	return c.implFor(v), nil
}

// Healthz asks the server (always, no cache) and returns its answer.
func (c *Client) Healthz(ctx context.Context) (Healthz, error) {
	a, err := c.api(ctx)
	if err != nil {
		return Healthz{}, err
	}
	h, err := a.healthz(ctx)
	if err != nil {
		return Healthz{}, err
	}
	c.mu.Lock()
	c.health = &h
	c.mu.Unlock()
	return h, nil
}

// MultiUser reports whether the server is multi-user (cached after the first healthz).
func (c *Client) MultiUser(ctx context.Context) (bool, error) {
	c.mu.Lock()
	h := c.health
	c.mu.Unlock()
	if h != nil {
		return h.MultiUser, nil
	}
	hz, err := c.Healthz(ctx)
	return hz.MultiUser, err
}

// namespace returns the namespace to send: the configured one in multi-user mode, "" otherwise.
func (c *Client) namespace(ctx context.Context, op string) (string, error) {
	mu, err := c.MultiUser(ctx)
	if err != nil {
		return "", err
	}
	if !mu {
		return "", nil
	}
	if c.opts.Namespace == "" {
		return "", &APIError{Op: op, Method: "-", Endpoint: c.base.String(), Kind: ErrInvalid,
			Message: "KFP is multi-user: set the runtime configuration's user_namespace (your Kubeflow profile namespace)"}
	}
	return c.opts.Namespace, nil
}

// apiIn resolves the API version, and the namespace to send for op (see namespace).
func (c *Client) apiIn(ctx context.Context, op string) (impl, string, error) {
	a, err := c.api(ctx)
	if err != nil {
		return nil, "", err
	}
	ns, err := c.namespace(ctx, op)
	if err != nil {
		return nil, "", err
	}
	return a, ns, nil
}

// UploadPipeline uploads a new pipeline and returns it with its first version. A name that is
// taken fails with ErrConflict (KFP 1.x answers 500, 2.x 409).
func (c *Client) UploadPipeline(ctx context.Context, r UploadRequest) (*Pipeline, *PipelineVersion, error) {
	if err := checkUpload("upload pipeline", c.base.String(), &r); err != nil {
		return nil, nil, err
	}
	a, err := c.api(ctx)
	if err != nil {
		return nil, nil, err
	}
	return a.uploadPipeline(ctx, r)
}

// PublishRequest is a compiled pipeline to publish with PublishPipeline.
type PublishRequest struct {
	// Name of the pipeline.
	Name string
	// VersionName names the version added when the pipeline exists already (Elyra uses
	// "<name>-<timestamp>"); a new pipeline's first version is named after the pipeline.
	VersionName string
	Description string
	Content     []byte
	// Namespace for a private pipeline (v2 only); empty means shared.
	Namespace string
}

// PublishPipeline uploads the package as a new pipeline, or as a new version of the pipeline of
// that name when it exists, which is what Elyra does on every submit. A concurrent publisher of
// the same new name is tolerated (the conflict turns into a version upload).
func (c *Client) PublishPipeline(ctx context.Context, r PublishRequest) (*Pipeline, *PipelineVersion, error) {
	if r.VersionName == "" {
		return nil, nil, invalid("publish pipeline", c.base.String(), "version name is required")
	}
	addVersion := func(p *Pipeline) (*Pipeline, *PipelineVersion, error) {
		v, err := c.UploadPipelineVersion(ctx, p.ID, UploadRequest{Name: r.VersionName, Description: r.Description, Content: r.Content})
		if err != nil {
			return nil, nil, err
		}
		p.DefaultVersionID = v.ID
		return p, v, nil
	}
	p, err := c.FindPipeline(ctx, r.Name, r.Namespace)
	switch {
	case err == nil:
		return addVersion(p)
	case !errors.Is(err, ErrNotFound):
		return nil, nil, err
	}
	p, v, err := c.UploadPipeline(ctx, UploadRequest{Name: r.Name, Description: r.Description, Content: r.Content, Namespace: r.Namespace})
	if errors.Is(err, ErrConflict) {
		if p, err = c.FindPipeline(ctx, r.Name, r.Namespace); err != nil {
			return nil, nil, err
		}
		return addVersion(p)
	}
	return p, v, err
}

// UploadPipelineVersion uploads a new version of an existing pipeline.
func (c *Client) UploadPipelineVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error) {
	if err := checkUpload("upload pipeline version", c.base.String(), &r); err != nil {
		return nil, err
	}
	if pipelineID == "" {
		return nil, invalid("upload pipeline version", c.base.String(), "pipeline ID is required")
	}
	a, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	return a.uploadVersion(ctx, pipelineID, r)
}

// FindPipeline returns the shared pipeline with this exact name; ErrNotFound if there is none.
// On v2 a non-empty namespace looks among that namespace's private pipelines instead.
func (c *Client) FindPipeline(ctx context.Context, name, namespace string) (*Pipeline, error) {
	a, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	return a.findPipeline(ctx, name, namespace)
}

// FindPipelineVersion returns the version of pipelineID with this exact name; ErrNotFound if none.
func (c *Client) FindPipelineVersion(ctx context.Context, pipelineID, name string) (*PipelineVersion, error) {
	a, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	return a.findVersion(ctx, pipelineID, name)
}

// CreateExperiment creates an experiment (in the user namespace when multi-user).
func (c *Client) CreateExperiment(ctx context.Context, name, description string) (*Experiment, error) {
	a, ns, err := c.apiIn(ctx, "create experiment")
	if err != nil {
		return nil, err
	}
	return a.createExperiment(ctx, name, description, ns)
}

// FindExperiment returns the experiment with this exact name (in the user namespace when
// multi-user); ErrNotFound if there is none.
func (c *Client) FindExperiment(ctx context.Context, name string) (*Experiment, error) {
	a, ns, err := c.apiIn(ctx, "find experiment")
	if err != nil {
		return nil, err
	}
	return a.findExperiment(ctx, name, ns)
}

// EnsureExperiment finds the experiment by name or creates it; a concurrent creator is tolerated.
func (c *Client) EnsureExperiment(ctx context.Context, name, description string) (*Experiment, error) {
	e, err := c.FindExperiment(ctx, name)
	if err == nil {
		return e, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	e, err = c.CreateExperiment(ctx, name, description)
	if errors.Is(err, ErrConflict) {
		return c.FindExperiment(ctx, name)
	}
	return e, err
}

// CreateRun starts a run. After an ambiguous failure (timeout, dropped connection, 502/504) the
// client looks the run up by name in its experiment before sending again, so a retry never
// creates a second run.
func (c *Client) CreateRun(ctx context.Context, r RunRequest) (*Run, error) {
	if r.Name == "" {
		return nil, invalid("create run", c.base.String(), "run name is required")
	}
	n := 0
	for _, src := range []bool{r.PipelineID != "" || r.VersionID != "", len(r.WorkflowManifest) > 0, len(r.PipelineSpec) > 0} {
		if src {
			n++
		}
	}
	if n != 1 {
		return nil, invalid("create run", c.base.String(), "exactly one of pipeline/version ID, workflow manifest or pipeline spec is required")
	}
	if len(r.WorkflowManifest) > 0 && !json.Valid(r.WorkflowManifest) {
		return nil, invalid("create run", c.base.String(), "workflow manifest must be JSON (KFP rejects YAML)")
	}
	if len(r.PipelineSpec) > 0 && !json.Valid(r.PipelineSpec) {
		return nil, invalid("create run", c.base.String(), "pipeline spec must be JSON")
	}
	a, ns, err := c.apiIn(ctx, "create run")
	if err != nil {
		return nil, err
	}
	return a.createRun(ctx, r, ns)
}

// GetRun returns a run with its decoded details and normalized status.
func (c *Client) GetRun(ctx context.Context, runID string) (*RunDetail, error) {
	a, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	return a.getRun(ctx, runID)
}

// GetRunStatus is GetRun reduced to what a watcher needs.
func (c *Client) GetRunStatus(ctx context.Context, runID string) (*RunStatus, error) {
	d, err := c.GetRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	return &d.Status, nil
}

// FindRun returns the newest run with exactly this name (in the experiment if given, else in the
// user namespace when multi-user); ErrNotFound if there is none. Useful to make a submit
// idempotent across restarts of the caller.
func (c *Client) FindRun(ctx context.Context, name, experimentID string) (*Run, error) {
	runs, _, err := c.ListRuns(ctx, ListRunsRequest{ExperimentID: experimentID, Name: name, PageSize: 10, SortBy: "created_at desc"})
	if err != nil {
		return nil, err
	}
	for i := range runs {
		if runs[i].Name == name {
			return &runs[i], nil
		}
	}
	return nil, &APIError{Op: "find run", Method: http.MethodGet, Endpoint: c.base.String(), Kind: ErrNotFound, Message: fmt.Sprintf("no run named %q", name)}
}

// Verify checks that the endpoint is KFP, the credentials work and, on a multi-user server, that
// the user namespace can be read (Elyra lists one experiment for the same purpose). It returns
// the healthz answer.
func (c *Client) Verify(ctx context.Context) (Healthz, error) {
	h, err := c.Healthz(ctx)
	if err != nil {
		return h, err
	}
	a, ns, err := c.apiIn(ctx, "verify")
	if err != nil {
		return h, err
	}
	// Any experiment name will do: the list itself is what needs auth and namespace access.
	if _, err := a.findExperiment(ctx, "kfbridge-verify", ns); err != nil && !errors.Is(err, ErrNotFound) {
		return h, err
	}
	return h, nil
}

// ListRuns lists runs (of an experiment, or of the user namespace in multi-user mode) and
// returns the next page token ("" on the last page).
func (c *Client) ListRuns(ctx context.Context, r ListRunsRequest) ([]Run, string, error) {
	a, ns, err := c.apiIn(ctx, "list runs")
	if err != nil {
		return nil, "", err
	}
	return a.listRuns(ctx, r, ns)
}

// TerminateRun asks KFP to stop a run; it ends as cancelled (v2 CANCELED, v1 Failed with Argo's
// deadline message).
func (c *Client) TerminateRun(ctx context.Context, runID string) error {
	a, err := c.api(ctx)
	if err != nil {
		return err
	}
	return a.terminateRun(ctx, runID)
}

func invalid(op, endpoint, msg string) error {
	return &APIError{Op: op, Method: "-", Endpoint: endpoint, Message: msg, Kind: ErrInvalid}
}

func checkUpload(op, endpoint string, r *UploadRequest) error {
	if r.Name == "" {
		return invalid(op, endpoint, "name is required")
	}
	if len(r.Name) > 100 {
		return invalid(op, endpoint, "name is longer than KFP's 100 characters")
	}
	if len(r.Content) == 0 {
		return invalid(op, endpoint, "pipeline package is empty")
	}
	if len(r.Content) > MaxUploadBytes {
		return invalid(op, endpoint, fmt.Sprintf("pipeline package is %d bytes, over KFP's %d-byte upload limit", len(r.Content), MaxUploadBytes))
	}
	if r.Filename == "" {
		r.Filename = sanitizeFilename(r.Name) + ".yaml"
	}
	low := strings.ToLower(r.Filename)
	if !strings.HasSuffix(low, ".yaml") && !strings.HasSuffix(low, ".yml") && !strings.HasSuffix(low, ".json") {
		return invalid(op, endpoint, "filename must end in .yaml, .yml or .json (KFP picks the parser by suffix)")
	}
	return nil
}

func sanitizeFilename(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "pipeline"
	}
	return b.String()
}

// ---- transport ----

// call is one logical API operation, possibly sent several times.
type call struct {
	op     string
	method string
	path   string
	query  url.Values
	body   []byte
	ctype  string
	// idempotent calls are re-sent blindly after transient failures.
	idempotent bool
	// lookup, for a non-idempotent call, finds what an earlier attempt may have created and
	// fills the result; found=false means the earlier attempt had no effect.
	lookup func(ctx context.Context) (found bool, err error)
	// out receives the decoded JSON response (nil to discard).
	out any
}

func jsonCall(op, method, path string, in any, out any) (*call, error) {
	cl := &call{op: op, method: method, path: path, out: out, idempotent: method == http.MethodGet}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("kfp: %s: encode request: %w", op, err)
		}
		cl.body, cl.ctype = b, "application/json"
	}
	return cl, nil
}

// attemptResult is what one send produced.
type attemptResult struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error
	sent   bool  // false when the request certainly did not reach the server
}

func (c *Client) endpoint(cl *call) string { return c.base.String() + cl.path }

// do runs a call with retries, re-login and, for non-idempotent calls, look-up before re-sending.
func (c *Client) do(ctx context.Context, cl *call) error {
	max := c.opts.Retry.MaxAttempts
	if ctx.Value(singleAttemptKey{}) != nil {
		max = 1
	}
	renewed := false
	needLookup := false
	var last *APIError
	attempts := 0
	for attempts < max {
		if attempts > 0 && last != nil {
			if err := c.sleep(ctx, attempts, needLookup); err != nil {
				return c.ctxError(cl, err, attempts, last)
			}
		}
		attempts++
		if needLookup {
			// The look-up makes one attempt: this loop already bounds and spaces the retries.
			found, err := cl.lookup(context.WithValue(ctx, singleAttemptKey{}, true))
			if err == nil && found {
				return nil
			}
			if err != nil {
				if ctx.Err() != nil {
					return c.ctxError(cl, ctx.Err(), attempts, last)
				}
				// Outcome of the earlier attempt still unknown: do not create again yet.
				last = &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), Kind: ErrUpstream, Cause: err,
					Message: "an earlier attempt may have succeeded, and looking it up failed: " + err.Error()}
				continue
			}
			needLookup = false
		}
		res := c.send(ctx, cl)
		var ae authError
		if errors.As(res.err, &ae) {
			var inner *APIError
			if errors.As(ae.error, &inner) {
				if errors.Is(inner, ErrUpstream) && ctx.Err() == nil {
					// The login endpoint was unreachable: as transient as the API itself.
					inner.Attempts = attempts
					last = inner
					continue
				}
				return inner
			}
			return &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), Kind: ErrUnauthorized, Cause: ae.error,
				Attempts: attempts, Message: "credentials: " + ae.error.Error()}
		}
		if res.err != nil {
			if ctx.Err() != nil {
				return c.ctxError(cl, ctx.Err(), attempts, last)
			}
			last = &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), Kind: ErrUpstream, Cause: res.err,
				Message: describeTransportErr(res.err)}
			if !transient(res.err) {
				break
			}
			if res.sent && !cl.idempotent {
				if cl.lookup == nil {
					last.Message += " (request may have been processed; not retried)"
					break
				}
				needLookup = true
			}
			continue
		}
		if res.status >= 200 && res.status < 300 {
			if cl.out == nil || len(bytes.TrimSpace(res.body)) == 0 {
				return nil
			}
			if err := json.Unmarshal(res.body, cl.out); err != nil {
				return &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), StatusCode: res.status, Attempts: attempts,
					Kind: ErrUpstream, Cause: err, Message: notKFP(res, err)}
			}
			return nil
		}
		apiErr := c.httpError(cl, res)
		if c.loginNeeded(res) && !renewed {
			renewed = true
			ok, err := c.auth.renew(ctx)
			if err != nil {
				return err
			}
			if ok {
				attempts-- // a re-login is not a failed attempt
				last = nil
				continue
			}
		}
		last = apiErr
		if !retryableStatus(res.status) {
			break
		}
		if !cl.idempotent {
			if cl.lookup == nil {
				break
			}
			needLookup = true
		}
	}
	if last == nil {
		last = &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), Kind: ErrUpstream, Message: "no attempt made"}
	}
	last.Attempts = attempts
	if needLookup && ctx.Err() == nil {
		// The budget is spent but the last create may have taken effect: look once more, so a
		// caller is never told "failed" about something that exists.
		if c.sleep(ctx, 1, true) == nil {
			found, err := cl.lookup(context.WithValue(ctx, singleAttemptKey{}, true))
			if err == nil && found {
				return nil
			}
			if err == nil {
				return last // definitely not created
			}
		}
		last.Ambiguous = true
		last.Message += " (the request may have taken effect: look it up before sending it again)"
	}
	return last
}

func (c *Client) ctxError(cl *call, err error, attempts int, last *APIError) error {
	msg := "cancelled: " + err.Error()
	if last != nil {
		msg += "; last failure: " + last.Message
	}
	return &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), Kind: ErrUpstream, Cause: err, Attempts: attempts, Message: msg}
}

func (c *Client) sleep(ctx context.Context, retry int, beforeLookup bool) error {
	d := c.opts.Retry.InitialBackoff << (retry - 1)
	if d > c.opts.Retry.MaxBackoff || d <= 0 {
		d = c.opts.Retry.MaxBackoff
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if beforeLookup && d < c.opts.Retry.LookupDelay {
		d = c.opts.Retry.LookupDelay
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// send performs one HTTP attempt under the per-attempt timeout.
func (c *Client) send(ctx context.Context, cl *call) attemptResult {
	actx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	u := c.endpoint(cl)
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, u, body)
	if err != nil {
		return attemptResult{err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	if cl.ctype != "" {
		req.Header.Set("Content-Type", cl.ctype)
	}
	if err := c.auth.apply(actx, req); err != nil {
		return attemptResult{err: authError{err}}
	}
	// KFP's Istio policy rejects workload requests that carry a user-id header: never send one.
	req.Header.Del("kubeflow-userid")
	resp, err := c.hc.Do(req)
	if err != nil {
		return attemptResult{err: err, sent: !isDialError(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxResponseBytes+1))
	if err != nil {
		return attemptResult{err: fmt.Errorf("read response: %w", err), sent: true}
	}
	if int64(len(b)) > c.opts.MaxResponseBytes {
		return attemptResult{err: fmt.Errorf("response larger than %d bytes", c.opts.MaxResponseBytes), sent: true}
	}
	return attemptResult{status: resp.StatusCode, header: resp.Header, body: b, sent: true}
}

// singleAttemptKey in a context makes do() send once (used for look-ups inside a retry loop).
type singleAttemptKey struct{}

// authError marks a failure to obtain credentials; it is not retried.
type authError struct{ error }

// Unwrap returns the credential failure.
func (e authError) Unwrap() error { return e.error }

func (c *Client) httpError(cl *call, res attemptResult) *APIError {
	e := &APIError{Op: cl.op, Method: cl.method, Endpoint: c.endpoint(cl), StatusCode: res.status}
	msg, details, code, ok := parseErrorBody(res.body)
	switch {
	case ok:
		e.Message, e.Details, e.Code = msg, details, code
	case res.status >= 300 && res.status < 400:
		e.Message = "redirected to " + res.header.Get("Location") + " (an auth proxy wants a login: check auth_type and credentials)"
	default:
		e.Message = notKFP(res, nil)
	}
	e.Kind = classify(res.status, code, e.Message, e.Details)
	if !ok && res.status == http.StatusForbidden && isHTML(res.header) {
		e.Message = "the auth proxy refused the request (HTML sign-in page): check auth_type and credentials"
		e.Kind = ErrUnauthorized
	}
	return e
}

// loginNeeded reports whether the response means "your session/credentials are gone".
func (c *Client) loginNeeded(res attemptResult) bool {
	switch {
	case res.status == http.StatusUnauthorized:
		return true
	case res.status >= 300 && res.status < 400:
		return true
	case res.status == http.StatusForbidden && isHTML(res.header):
		return true
	}
	return false
}

func isHTML(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/html"
}

// notKFP explains a body that is not a KFP JSON answer.
func notKFP(res attemptResult, err error) string {
	ct := res.header.Get("Content-Type")
	snippet := strings.TrimSpace(string(res.body))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	msg := fmt.Sprintf("unexpected response (Content-Type %q)", ct)
	if err != nil {
		msg += ": " + err.Error()
	}
	if isHTML(res.header) {
		msg += "; got an HTML page, not the KFP API: check api_endpoint (it usually ends in /pipeline) and auth"
	} else if snippet != "" {
		msg += ": " + snippet
	}
	return msg
}

func retryableStatus(s int) bool {
	switch s {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// isDialError reports a failure before the request was written (connection refused, no route):
// such a request certainly did not reach KFP.
func isDialError(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return false
}

// transient reports whether a transport error may go away on retry.
func transient(err error) bool {
	var ae authError
	if errors.As(err, &ae) {
		return false
	}
	var ua *x509.UnknownAuthorityError
	var hn x509.HostnameError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &cv) {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTemporary || dns.IsTimeout
	}
	return true
}

func describeTransportErr(err error) string {
	var ae authError
	switch {
	case errors.As(err, &ae):
		return "credentials: " + ae.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "KFP is unreachable (connection refused): " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "KFP did not answer in time: " + err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "KFP did not answer in time: " + err.Error()
	}
	return err.Error()
}
