// Package kfptest is a fake Kubeflow Pipelines API server for tests: v1beta1 and v2beta1 on one
// listener, every request validated against the official swagger (kin-openapi) and every 2xx
// answer too, with KFP's documented behaviour (single/multi-user rules, upload checks, duplicate
// names, inline manifests), pluggable run execution, a fake Dex login, and fault injection.
//
// A request that does not match the swagger fails the test that owns the server (t.Errorf) and
// is answered 400, so a client bug cannot hide behind a lenient fake. Object schemas are closed
// (no unknown or camelCase fields), which is stricter than KFP itself on purpose.
//
// Usage:
//
//	s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
//	c, _ := kfp.New(s.URL, kfp.Options{Namespace: "alice"})
//	... // every request c sends is validated; s.Runs(), s.Requests() show what happened
//
// Runs are executed by an Executor (default ScriptExecutor: every step succeeds at once). An
// executor gets each FakeRun with its parsed Steps (DAG order, container image/command/args/env
// and the raw Argo template or IR executor in Spec), the stored Argo Workflow (parameters
// applied, metadata.name/uid set: uid is the run ID) or the IR PipelineSpec, and reports
// progress with SetStep/SetPhase; GET run turns those reports into workflow_manifest node
// statuses (v1) and task_details (v2). Executors must treat Workflow, PipelineSpec and Steps as
// read-only and must return when ctx is cancelled (terminate or server close).
package kfptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	// MultiUser switches on Kubeflow multi-user rules (namespaced experiments and runs).
	MultiUser bool
	// Versions served; default both "v1beta1" and "v2beta1" (a KFP 2.x server). {"v1beta1"}
	// behaves like KFP 1.x: v2beta1 paths answer 404.
	Versions []string
	// PathPrefix puts the API under a prefix, e.g. "/pipeline" as behind the Kubeflow ingress.
	PathPrefix string
	// Executor runs created runs; default ScriptExecutor{} (every step succeeds at once).
	Executor Executor
	// CompressNodes makes v1 workflow_manifest carry status.compressedNodes instead of nodes.
	CompressNodes bool
	// Tokens, when non-nil, requires "Authorization: Bearer <token>" with one of these tokens
	// (or a Dex session when Dex is set). SetTokens changes them at run time.
	Tokens []string
	// Dex, when set, puts a fake Dex + authservice in front of the API (see DexOptions).
	Dex *DexOptions
	// OnViolation receives every contract violation; default t.Errorf.
	OnViolation func(error)
	// SpecDir is shared/specs/kfp; default FindSpecDir().
	SpecDir string
	// TLS serves HTTPS with httptest's certificate (see CAFile).
	TLS bool
}

// Fault is an injected failure for requests matching Method and Path (the API path without the
// prefix, e.g. "/apis/v1beta1/runs"; empty matches any).
type Fault struct {
	Method string
	Path   string
	// Times is how many matching requests are affected (default 1).
	Times int
	// Status answers with this HTTP status and a KFP error body.
	Status int
	// Delay waits before answering (or until the client gives up); with AfterHandle the wait
	// comes after the request took effect.
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// Detached makes a before-handling Delay ignore the client going away: the server still
	// processes the request late, like a slow KFP whose client timed out.
	Detached bool
	// AfterHandle processes the request first (its effects happen) and only then fails it: the
	// ambiguous failure that must not make a client create twice.
	AfterHandle bool
}

// Recorded is one request the server received.
type Recorded struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
}

// Server is the fake. Its exported methods are safe for concurrent use.
type Server struct {
	// URL is the API base URL to give the client (includes PathPrefix).
	URL string
	// Root is the server's origin (scheme://host:port), where the fake Dex lives.
	Root string

	t      testing.TB
	opts   Options
	hs     *httptest.Server
	specs  map[string]*spec
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	pipelines   []*fakePipeline
	versions    []*fakeVersion
	experiments []*fakeExperiment
	runs        []*FakeRun
	tokens      map[string]bool
	sessions    map[string]bool
	faults      []*faultState
	requests    []Recorded
	violations  []error
	dex         *dexState
}

type faultState struct {
	Fault
	left int
}

type fakePipeline struct {
	id, name, displayName, description, namespace string
	created                                       time.Time
}

type fakeVersion struct {
	id, pipelineID, name, displayName, description string
	created                                        time.Time
	tmpl                                           *template
}

type fakeExperiment struct {
	id, name, description, namespace string
	created                          time.Time
}

// NewServer starts a fake KFP server; it is closed when the test ends. Without the swagger files
// the test is skipped, or fails when CI=true.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := opts.SpecDir
	if dir == "" {
		d, err := FindSpecDir()
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("kfptest: %v", err)
			}
			t.Skipf("kfptest: %v", err)
		}
		dir = d
	}
	if len(opts.Versions) == 0 {
		opts.Versions = []string{"v1beta1", "v2beta1"}
	}
	if opts.Executor == nil {
		opts.Executor = ScriptExecutor{}
	}
	opts.PathPrefix = strings.TrimRight(opts.PathPrefix, "/")
	s := &Server{t: t, opts: opts, specs: map[string]*spec{}, sessions: map[string]bool{}}
	for _, v := range opts.Versions {
		sp, err := loadSpec(dir, v)
		if err != nil {
			t.Fatalf("kfptest: %v", err)
		}
		s.specs[v] = sp
	}
	if opts.Tokens != nil {
		s.SetTokens(opts.Tokens...)
	}
	if opts.Dex != nil {
		s.dex = newDexState(*opts.Dex)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hs = httptest.NewUnstartedServer(s)
	// Failed TLS handshakes and dropped connections are what some tests provoke: keep logs quiet.
	s.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS {
		s.hs.StartTLS()
	} else {
		s.hs.Start()
	}
	s.Root = s.hs.URL
	s.URL = s.hs.URL + opts.PathPrefix
	t.Cleanup(s.Close)
	return s
}

// Close stops the executors and the listener.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
	s.hs.Close()
}

// CAFile writes the TLS server's certificate as a PEM file and returns its path (TLS only).
func (s *Server) CAFile(dir string) string {
	s.t.Helper()
	cert := s.hs.Certificate()
	if cert == nil {
		s.t.Fatal("kfptest: CAFile needs Options.TLS")
	}
	p := filepath.Join(dir, "kfp-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// SetTokens replaces the accepted bearer tokens (token rotation).
func (s *Server) SetTokens(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]bool{}
	for _, t := range tokens {
		s.tokens[t] = true
	}
}

// ExpireSessions forgets every Dex session, so clients must log in again.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions = map[string]bool{}
}

// InjectFault adds a fault; faults are consumed in the order they were added.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f, left: f.Times})
}

// Requests returns every request received so far.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.requests...)
}

// CountRequests counts received requests with this method and API path.
func (s *Server) CountRequests(method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// Violations returns the contract violations seen so far.
func (s *Server) Violations() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.violations...)
}

// Runs returns every run in creation order.
func (s *Server) Runs() []*FakeRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*FakeRun(nil), s.runs...)
}

// Run returns the run with this ID, or nil.
func (s *Server) Run(id string) *FakeRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findRun(id)
}

// PipelineCount and VersionCount report what was uploaded.
func (s *Server) PipelineCount() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.pipelines) }

// VersionCount reports how many pipeline versions exist.
func (s *Server) VersionCount() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.versions) }

func (s *Server) violation(err error) {
	s.mu.Lock()
	s.violations = append(s.violations, err)
	s.mu.Unlock()
	if s.opts.OnViolation != nil {
		s.opts.OnViolation(err)
		return
	}
	s.t.Errorf("kfptest: contract violation: %v", err)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randSuffix(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// maxBody bounds what the fake reads: a little over KFP's 32 MiB upload cap, so it can answer
// "too large" the way KFP does.
const maxBody = 40 << 20

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Recorded{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, s.opts.PathPrefix), Query: r.URL.Query(), Header: r.Header.Clone()})
	s.mu.Unlock()
	if v := r.Header.Values("kubeflow-userid"); len(v) > 0 {
		s.violation(fmt.Errorf("%s %s carries a kubeflow-userid header (%q): KFP's Istio policy rejects it", r.Method, r.URL.Path, v))
	}
	if s.dex != nil && (strings.HasPrefix(r.URL.Path, "/dex/") || strings.HasPrefix(r.URL.Path, "/authservice/") || strings.HasPrefix(r.URL.Path, "/oauth2/")) {
		s.serveDex(w, r)
		return
	}
	// The auth proxy (or the API server's authenticator) acts before any routing.
	if !s.authorized(r) {
		if s.dex != nil {
			s.redirectToLogin(w, r)
			return
		}
		writeJSON(w, http.StatusUnauthorized, grpcErrorBody("v1beta1", http.StatusUnauthorized, "Unauthenticated: no valid bearer token or session"))
		return
	}
	if s.opts.PathPrefix != "" && (r.URL.Path == s.opts.PathPrefix || r.URL.Path == s.opts.PathPrefix+"/") {
		// Behind the ingress the prefix itself is the KFP UI.
		writeHTML(w, http.StatusOK, "<html><body>Kubeflow Pipelines (fake UI)</body></html>")
		return
	}
	if !strings.HasPrefix(r.URL.Path, s.opts.PathPrefix+"/") {
		http.NotFound(w, r)
		return
	}
	apiPath := strings.TrimPrefix(r.URL.Path, s.opts.PathPrefix)
	version := ""
	for v := range s.specs {
		if strings.HasPrefix(apiPath, "/apis/"+v+"/") {
			version = v
		}
	}
	if version == "" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	fault := s.takeFault(r.Method, apiPath)
	if fault != nil && !fault.AfterHandle && injectFault(w, r, fault, version, "injected fault") {
		return
	}

	vr := r.Clone(r.Context())
	vr.URL.Path = apiPath
	vr.URL.RawPath = ""
	in, verr := s.specs[version].validateRequest(r.Context(), vr, body)
	if verr != nil {
		s.violation(verr)
		writeJSON(w, http.StatusBadRequest, grpcErrorBody(version, http.StatusBadRequest, "request does not match the swagger: "+verr.Error()))
		return
	}
	rec := httptest.NewRecorder()
	s.dispatch(rec, &reqCtx{r: vr, version: version, op: in.Route.Operation.OperationID, params: in.PathParams, q: vr.URL.Query(), body: body})
	if err := validateResponse(r.Context(), in, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		s.violation(err)
	}
	// With AfterHandle the request took effect; the answer is late or lost.
	if fault != nil && fault.AfterHandle && injectFault(w, r, fault, version, "injected fault after processing") {
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// injectFault applies f at its moment (before or after handling): its delay, then its dropped
// connection or error status (with msg). It reports whether the request is over: answered,
// dropped, or given up by the client during the delay.
func injectFault(w http.ResponseWriter, r *http.Request, f *Fault, version, msg string) bool {
	if f.Detached && !f.AfterHandle {
		time.Sleep(f.Delay)
	} else if !sleepCtx(r.Context(), f.Delay) {
		return true
	}
	if f.Drop {
		dropConn(w)
		return true
	}
	if f.Status != 0 {
		writeJSON(w, f.Status, grpcErrorBody(version, f.Status, msg))
		return true
	}
	return false
}

// sleepCtx waits d; false if the client went away first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) takeFault(method, path string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.left <= 0 || (f.Method != "" && f.Method != method) || (f.Path != "" && f.Path != path) {
			continue
		}
		f.left--
		c := f.Fault
		return &c
	}
	return nil
}

func dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

// authorized applies the configured auth: no Tokens and no Dex means open.
func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil && s.dex == nil {
		return true
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokens[tok] {
		return true
	}
	if s.dex != nil {
		if c, err := r.Cookie(s.dex.opts.CookieName); err == nil && s.sessions[c.Value] {
			return true
		}
	}
	return false
}

// ---- responses ----

type reqCtx struct {
	r       *http.Request
	version string
	op      string
	params  map[string]string
	q       url.Values
	body    []byte
}

// apiError is an error answer. bare selects the {error_message, error_details} shape of KFP's
// hand-written upload handlers.
type apiError struct {
	status int
	msg    string
	bare   bool
}

// Error returns the message KFP would write.
func (e *apiError) Error() string { return e.msg }

func errf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 3
	case http.StatusNotFound:
		return 5
	case http.StatusConflict:
		return 6
	case http.StatusForbidden:
		return 7
	case http.StatusUnauthorized:
		return 16
	case http.StatusServiceUnavailable:
		return 14
	case http.StatusGatewayTimeout:
		return 4
	}
	return 13
}

// grpcErrorBody is grpc-gateway's error shape: v1beta1 {error, message, code, details} with an
// api.Error detail, v2beta1 googleRpcStatus {code, message, details}.
func grpcErrorBody(version string, status int, msg string) any {
	if version == "v1beta1" {
		return map[string]any{"error": msg, "message": msg, "code": grpcCode(status), "details": []any{
			map[string]any{"@type": "type.googleapis.com/api.Error", "error_message": msg, "error_details": msg},
		}}
	}
	return map[string]any{"code": grpcCode(status), "message": msg, "details": []any{}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) dispatch(w http.ResponseWriter, c *reqCtx) {
	h := s.handlers()[c.version+" "+c.op]
	if h == nil {
		writeJSON(w, http.StatusNotImplemented, grpcErrorBody(c.version, http.StatusNotImplemented, "kfptest: "+c.op+" is not implemented by the fake"))
		return
	}
	out, aerr := h(c)
	if aerr != nil {
		if aerr.bare {
			writeJSON(w, aerr.status, map[string]any{"error_message": aerr.msg, "error_details": aerr.msg})
			return
		}
		writeJSON(w, aerr.status, grpcErrorBody(c.version, aerr.status, aerr.msg))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "1970-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339)
}
