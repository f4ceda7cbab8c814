package runs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage"
)

// RuntimeConfigs is what the KFP runtimes need from the runtime store: a configuration with its
// secrets (RuntimeStore.RuntimeWithSecrets).
type RuntimeConfigs interface {
	RuntimeWithSecrets(name string) (RuntimeConfig, error)
}

// KFPOptions configure the KFP runtimes a KFPResolver builds.
type KFPOptions struct {
	// RunnerBinary is a linux kfbridge-step that IR (KFP 2.x) packages deliver to their pods.
	RunnerBinary string
	// Images returns pull settings of runtime images, keyed by image reference; optional.
	Images func() map[string]compile.Image
	// Getenv is the environment the object store may read credentials and AWS_REGION from when the
	// runtime configuration has no cos_username/cos_password; nil means none.
	Getenv func(string) string
	// PollInterval is the watcher's first and shortest wait between two GET run calls (default 2 s);
	// it doubles while nothing changes, up to MaxPollInterval (default 15 s).
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	// LostAfter is how long KFP may fail every poll before the run is given up as failed (30 min).
	LostAfter time.Duration
	// CancelWait bounds how long a cancelled run is followed until KFP reports it ended (2 min).
	CancelWait time.Duration
	// Client tunes the KFP client (timeouts, retries, transport); API version, namespace, auth and
	// CA bundle always come from the runtime configuration.
	Client kfp.Options
	Logger *slog.Logger
}

func (o *KFPOptions) defaults() {
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.MaxPollInterval < o.PollInterval {
		o.MaxPollInterval = max(15*time.Second, o.PollInterval)
	}
	if o.LostAfter <= 0 {
		o.LostAfter = 30 * time.Minute
	}
	if o.CancelWait <= 0 {
		o.CancelWait = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// KFPResolver resolves runtime names to KFP runtimes, reading the configuration afresh for every
// submission so edits apply at once.
type KFPResolver struct {
	Configs RuntimeConfigs
	Options KFPOptions
}

// Resolve implements RuntimeResolver.
func (r *KFPResolver) Resolve(ctx context.Context, name string) (Runtime, error) {
	rc, err := r.Configs.RuntimeWithSecrets(name)
	if err != nil {
		return nil, err
	}
	if rc.SchemaName != SchemaKFP {
		return nil, fmt.Errorf("%w: runtime %q has schema %q; only kfp runtimes run remotely", ErrInvalid, name, rc.SchemaName)
	}
	return NewKFP(rc, r.Options)
}

// KFP runs pipelines on Kubeflow Pipelines: Start packages the nodes into the runtime's object
// store, compiles for the server's API version (Argo for v1beta1, IR for v2beta1), publishes the
// package as a new pipeline or a new version of the pipeline of that name, ensures the experiment
// and creates the run; Execute follows the run and reports step statuses; Terminate stops it.
type KFP struct {
	rc     RuntimeConfig
	opts   KFPOptions
	client *kfp.Client
	creds  compile.Credentials

	storeOnce sync.Once
	store     storage.Store
	storeErr  error
}

// NewKFP returns the runtime of a KFP runtime configuration (with secrets). It does no I/O.
func NewKFP(rc RuntimeConfig, opts KFPOptions) (*KFP, error) {
	opts.defaults()
	m := rc.Metadata
	creds, err := cosCredentials(rc)
	if err != nil {
		return nil, err
	}
	ko, err := m.KFPOptions()
	if err != nil {
		return nil, err
	}
	co := opts.Client
	co.APIVersion, co.Namespace, co.Auth, co.CABundle = ko.APIVersion, ko.Namespace, ko.Auth, ko.CABundle
	if co.Retry.LookupDelay <= 0 {
		// After a create timed out, give KFP as long again to finish it before looking it up: a
		// create that lands after the look-up found nothing would be sent twice.
		co.Retry.LookupDelay = co.RequestTimeout
		if co.Retry.LookupDelay <= 0 {
			co.Retry.LookupDelay = 30 * time.Second
		}
	}
	client, err := kfp.New(m.APIEndpoint, co)
	if err != nil {
		return nil, fmt.Errorf("%w: runtime %q: %v", ErrInvalid, rc.Name, err)
	}
	return &KFP{rc: rc, opts: opts, client: client, creds: creds}, nil
}

// cosCredentials says how the pods of a runtime get object-store keys. Keys are never compiled into
// a pipeline (they would show in the KFP UI and in every exported package), so Elyra's
// USER_CREDENTIALS mode works only together with a Kubernetes Secret holding the same keys.
func cosCredentials(rc RuntimeConfig) (compile.Credentials, error) {
	m := rc.Metadata
	switch m.COSAuthType {
	case COSAuthKubernetesSecret:
		if m.COSSecret == "" {
			return compile.Credentials{}, fmt.Errorf("%w: runtime %q: cos_auth_type %s needs cos_secret (a Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", ErrInvalid, rc.Name, m.COSAuthType)
		}
		return compile.Credentials{Mode: compile.CredentialsSecret, SecretName: m.COSSecret}, nil
	case COSAuthIRSA:
		return compile.Credentials{Mode: compile.CredentialsIRSA}, nil
	case COSAuthUserCredentials, "":
		if m.COSSecret != "" {
			// The user's keys stay with kfbridge (uploads); the pods read the Secret.
			return compile.Credentials{Mode: compile.CredentialsSecret, SecretName: m.COSSecret}, nil
		}
		return compile.Credentials{}, fmt.Errorf("%w: runtime %q: cos_auth_type %s would put the object-store keys into the pipeline, where the KFP UI shows them; kfbridge never does that. "+
			"Create a Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the pipeline namespace and set cos_secret to its name "+
			"(cos_auth_type %s), or use %s", ErrInvalid, rc.Name, COSAuthUserCredentials, COSAuthKubernetesSecret, COSAuthIRSA)
	}
	return compile.Credentials{}, fmt.Errorf("%w: runtime %q: unknown cos_auth_type %q", ErrInvalid, rc.Name, m.COSAuthType)
}

// Name implements Runtime.
func (k *KFP) Name() string { return k.rc.Name }

// Client returns the runtime's KFP client.
func (k *KFP) Client() *kfp.Client { return k.client }

// openStore opens the runtime's object store once: with cos_username/cos_password when set, else
// with the credentials of kfbridge's own environment.
func (k *KFP) openStore(ctx context.Context) (storage.Store, error) {
	k.storeOnce.Do(func() {
		m := k.rc.Metadata
		cfg := storage.Config{Endpoint: m.COSEndpoint, Bucket: m.COSBucket, Prefix: m.COSObjectPrefix,
			AccessKey: m.COSUsername, SecretKey: m.COSPassword, Getenv: k.opts.Getenv}
		k.store, k.storeErr = storage.Open(ctx, cfg)
		if k.storeErr != nil {
			k.storeErr = fmt.Errorf("%w: runtime %q: object store %s/%s: %v", ErrUpstream, k.rc.Name, m.COSEndpoint, m.COSBucket, k.storeErr)
		}
	})
	return k.store, k.storeErr
}

// kfpErr turns a KFP client error into a run error kind: KFP refusing what the client itself
// found invalid (e.g. no user namespace on a multi-user server) is the caller's to fix (400);
// everything else is a failure of KFP (502).
func (k *KFP) kfpErr(step string, err error) error {
	if errors.Is(err, kfp.ErrInvalid) {
		var ae *kfp.APIError
		if errors.As(err, &ae) && ae.StatusCode == 0 {
			return fmt.Errorf("%w: runtime %q: %s: %v", ErrInvalid, k.rc.Name, step, err)
		}
	}
	return fmt.Errorf("%w: runtime %q: %s: %v", ErrUpstream, k.rc.Name, step, err)
}

// maxKFPName is KFP's limit on pipeline and version names.
const maxKFPName = 100

// kfpName joins a pipeline name and a suffix within KFP's name limit.
func kfpName(name, suffix string) string {
	if suffix == "" {
		if len(name) > maxKFPName {
			return name[:maxKFPName]
		}
		return name
	}
	room := maxKFPName - len(suffix) - 1
	if len(name) > room {
		name = name[:room]
	}
	return name + "-" + suffix
}

// Start implements Starter. Nothing is created in KFP before the package compiled and its files
// are in the object store; the run name embeds the kfbridge run ID, so the client's look-up after
// an ambiguous create finds exactly this submission's run.
func (k *KFP) Start(ctx context.Context, job *Job, root string, progress func(Progress)) (*Started, error) {
	m := k.rc.Metadata
	p := job.Pipeline
	// Verify first: a wrong endpoint, credentials or namespace must fail before any upload.
	h, err := k.client.Verify(ctx)
	if err != nil {
		return nil, k.kfpErr("connect to Kubeflow Pipelines", err)
	}
	format := FormatArgo
	if h.APIVersion == kfp.V2Beta1 {
		format = FormatKFPv2
	}
	store, err := k.openStore(ctx)
	if err != nil {
		return nil, err
	}
	var images map[string]compile.Image
	if k.opts.Images != nil {
		images = k.opts.Images()
	}
	region := ""
	if k.opts.Getenv != nil {
		region = k.opts.Getenv("AWS_REGION")
	}
	pkg, archives, err := Compile(ctx, p, CompileConfig{
		Format: format, Root: root, Store: store,
		Endpoint: m.COSEndpoint, Bucket: m.COSBucket, Region: region, Prefix: m.COSObjectPrefix,
		RunnerImage: m.RunnerImage, RunnerBinary: k.opts.RunnerBinary,
		Credentials: k.creds, Images: images, RunID: job.RunID, Progress: progress,
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) || ctx.Err() != nil {
			return nil, err
		}
		// What remains are object-store failures (or a server without a runner binary to deliver).
		return nil, fmt.Errorf("%w: runtime %q: package and compile for %s: %v", ErrUpstream, k.rc.Name, format, err)
	}
	job.Archives = archives
	desc := p.Description
	if desc == "" {
		desc = "Submitted by kfbridge"
		if p.Source != "" {
			desc += " from " + p.Source
		}
	}
	pl, ver, err := k.client.PublishPipeline(ctx, kfp.PublishRequest{
		Name: kfpName(p.Name, ""), VersionName: kfpName(p.Name, job.RunID), Description: desc, Content: pkg,
	})
	if err != nil {
		return nil, k.kfpErr("upload pipeline", err)
	}
	// Elyra lower-cases experiment names (KFP issue 5172: names are matched case-sensitively in places).
	exp, err := k.client.EnsureExperiment(ctx, kfpName(strings.ToLower(p.Name), ""), "Runs of "+p.Name+" submitted by kfbridge")
	if err != nil {
		return nil, k.kfpErr("ensure experiment", err)
	}
	req := kfp.RunRequest{Name: kfpName(p.Name, job.RunID), Description: desc, ExperimentID: exp.ID, PipelineID: pl.ID}
	if ver != nil {
		req.VersionID = ver.ID
	}
	run, err := k.client.CreateRun(ctx, req)
	if err != nil {
		return nil, k.kfpErr("create run", err)
	}
	runDir := storage.RunDir(m.COSObjectPrefix, job.RunID)
	cos := m.PublicCOSEndpoint
	if cos == "" {
		cos = m.COSEndpoint
	}
	ui := m.PublicAPIEndpoint
	if ui == "" {
		ui = m.APIEndpoint
	}
	tasks, err := TaskNames(p, format)
	if err != nil {
		return nil, err
	}
	return &Started{
		KFPRunID: run.ID, RunURL: kfp.RunURL(ui, run.ID),
		RunDir: runDir, ObjectStoreURL: strings.TrimRight(cos, "/") + "/" + m.COSBucket + "/" + runDir,
		Archive: logstream.StoreArchive{Store: store, Prefix: m.COSObjectPrefix},
		Tasks:   tasks,
	}, nil
}

// TaskNames maps the DAG task names a compiled package gives the nodes of p (what KFP reports as
// the steps' display names) to node IDs.
func TaskNames(p *pipeline.Pipeline, format string) (map[string]string, error) {
	var reserved []string
	if format == FormatArgo {
		// The Argo compiler reserves the entrypoint template's name (kfp/argo).
		reserved = append(reserved, compile.DNSLabel(p.Name, 50, "pipeline"))
	}
	plan, err := compile.NewPlan(p, reserved...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	out := make(map[string]string, len(plan.Steps))
	for _, s := range plan.Steps {
		out[s.Name] = s.Node.ID
	}
	return out, nil
}

// Attach implements Attacher: it reopens the runtime's object store for the run's step logs.
func (k *KFP) Attach(ctx context.Context, job *Job) error {
	store, err := k.openStore(ctx)
	if err != nil {
		return err
	}
	job.Remote.Archive = logstream.StoreArchive{Store: store, Prefix: k.rc.Metadata.COSObjectPrefix}
	return nil
}

// Terminate implements Terminator.
func (k *KFP) Terminate(ctx context.Context, job *Job) error {
	if job.Remote == nil || job.Remote.KFPRunID == "" {
		return nil
	}
	if err := k.client.TerminateRun(ctx, job.Remote.KFPRunID); err != nil {
		return k.kfpErr("terminate run "+job.Remote.KFPRunID, err)
	}
	return nil
}

// Execute implements Runtime: it follows the KFP run until it ends and reports each step's status
// as KFP shows it. Polling backs off while nothing changes. After ctx is cancelled (Cancel has
// asked KFP to terminate the run) it keeps following for up to CancelWait, so the steps' final
// statuses are the ones KFP recorded.
func (k *KFP) Execute(ctx context.Context, job *Job, rep Reporter) error {
	if job.Remote == nil || job.Remote.KFPRunID == "" {
		return errors.New("kfp: run was not started")
	}
	w := &watcher{k: k, id: job.Remote.KFPRunID, tasks: job.Remote.Tasks, rep: rep, seen: map[string]stepSeen{}}
	return w.follow(ctx)
}

type stepSeen struct {
	status string
	code   string
}

// watcher turns polled KFP run statuses into step status reports.
type watcher struct {
	k     *KFP
	id    string
	tasks map[string]string // DAG task name -> node ID
	rep   Reporter
	seen  map[string]stepSeen
}

func (w *watcher) follow(ctx context.Context) error {
	opts := w.k.opts
	interval := opts.PollInterval
	var failingSince time.Time
	pollCtx := ctx
	var cancelDeadline time.Time
	for {
		if errors.Is(context.Cause(ctx), errShutdown) {
			return ctx.Err() // kfbridge stops; the run goes on in KFP and is followed after restart
		}
		if ctx.Err() != nil && cancelDeadline.IsZero() {
			// Cancelled: KFP was told to terminate; keep watching it wind down, bounded.
			cancelDeadline = time.Now().Add(opts.CancelWait)
			var stop context.CancelFunc
			pollCtx, stop = context.WithDeadline(context.WithoutCancel(ctx), cancelDeadline)
			defer stop()
			interval = opts.PollInterval
		}
		st, err := w.k.client.GetRunStatus(pollCtx, w.id)
		switch {
		case err == nil:
			failingSince = time.Time{}
			changed := w.apply(st)
			if st.State.Terminal() {
				return w.result(ctx, st)
			}
			if changed {
				interval = opts.PollInterval
			} else {
				interval = min(interval*2, opts.MaxPollInterval)
			}
		case errors.Is(err, kfp.ErrNotFound):
			return fmt.Errorf("KFP run %s no longer exists (deleted in KFP?)", w.id)
		default:
			if pollCtx.Err() != nil {
				return ctx.Err()
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > opts.LostAfter {
				return fmt.Errorf("lost contact with Kubeflow Pipelines for %s: %v", opts.LostAfter, err)
			}
			opts.Logger.Warn("kfp: poll run status", "kfp_run_id", w.id, "err", err)
			interval = min(interval*2, opts.MaxPollInterval)
		}
		t := time.NewTimer(interval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if cancelDeadline.IsZero() {
				continue // switch to the cancel wait at once
			}
		case <-pollCtx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// apply reports every step whose status changed; it reports whether anything did.
func (w *watcher) apply(st *kfp.RunStatus) bool {
	changed := false
	for _, s := range st.Steps {
		id, ok := w.tasks[s.DisplayName]
		if !ok {
			continue
		}
		status, code, msg := stepStatus(s, st.State)
		if status == "" {
			continue
		}
		key := stepSeen{status: status}
		if code != nil {
			key.code = fmt.Sprint(*code)
		}
		prev := w.seen[id]
		if prev == key {
			continue
		}
		if prev.status == "" && (status == StatusSucceeded || status == StatusFailed) {
			// A step that ran between two polls still gets its running report: that is what starts
			// tailing its log, so its lines reach viewers before its end.
			w.rep.StepStatus(id, StatusRunning, nil, "")
		}
		w.seen[id] = key
		w.rep.StepStatus(id, status, code, msg)
		changed = true
	}
	return changed
}

// stepStatus maps a KFP step to a kfbridge step status ("" for a step not started yet).
func stepStatus(s kfp.StepStatus, run kfp.Phase) (string, *int, string) {
	switch s.Phase {
	case kfp.PhaseRunning, kfp.PhaseCancelling:
		return StatusRunning, nil, ""
	case kfp.PhaseSucceeded:
		code := s.ExitCode
		if code == nil {
			zero := 0
			code = &zero
		}
		return StatusSucceeded, code, ""
	case kfp.PhaseFailed:
		msg := s.Message
		if s.ExitCode != nil && msg == "" {
			msg = fmt.Sprintf("exited with code %d", *s.ExitCode)
		}
		if run == kfp.PhaseCancelled {
			return StatusCancelled, s.ExitCode, msg
		}
		return StatusFailed, s.ExitCode, msg
	case kfp.PhaseSkipped:
		return StatusSkipped, nil, "not run: " + firstNonEmpty(s.Message, "an upstream step did not succeed")
	case kfp.PhaseCancelled:
		return StatusCancelled, s.ExitCode, firstNonEmpty(s.Message, "run terminated")
	}
	return "", nil, ""
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// result is Execute's answer for a run KFP reports as ended.
func (w *watcher) result(ctx context.Context, st *kfp.RunStatus) error {
	switch st.State {
	case kfp.PhaseSucceeded:
		return nil
	case kfp.PhaseCancelled:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: KFP run %s was terminated", ErrRemoteCancelled, w.id)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, s := range st.Steps {
		if _, ok := w.tasks[s.DisplayName]; ok && s.Phase == kfp.PhaseFailed {
			// The manager names the failed step; KFP's own message adds nothing.
			return nil
		}
	}
	msg := st.Message
	if msg == "" {
		msg = st.RawState
	}
	return fmt.Errorf("KFP run %s %s: %s", w.id, st.State, msg)
}

// ArchiveRouter is a logstream.Archive that reads each run's step logs where that run's steps
// write them: remote runs in their runtime's object store (Set by the manager), every other run in
// the default archive (the server's own store).
type ArchiveRouter struct {
	Default logstream.Archive

	mu   sync.RWMutex
	runs map[string]logstream.Archive
}

// NewArchiveRouter returns a router falling back to def.
func NewArchiveRouter(def logstream.Archive) *ArchiveRouter {
	return &ArchiveRouter{Default: def, runs: map[string]logstream.Archive{}}
}

// Set routes a run's logs to a.
func (r *ArchiveRouter) Set(runID string, a logstream.Archive) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[runID] = a
}

func (r *ArchiveRouter) of(runID string) logstream.Archive {
	r.mu.RLock()
	a := r.runs[runID]
	r.mu.RUnlock()
	if a == nil {
		return r.Default
	}
	return a
}

// Manifest implements logstream.Archive.
func (r *ArchiveRouter) Manifest(ctx context.Context, runID, stepID string) (logstream.End, error) {
	a := r.of(runID)
	if a == nil {
		return logstream.End{}, logstream.ErrNotArchived
	}
	return a.Manifest(ctx, runID, stepID)
}

// Open implements logstream.Archive.
func (r *ArchiveRouter) Open(ctx context.Context, runID, stepID, name string) (io.ReadCloser, error) {
	a := r.of(runID)
	if a == nil {
		return nil, logstream.ErrNotArchived
	}
	return a.Open(ctx, runID, stepID, name)
}

// Segments implements logstream.Archive.
func (r *ArchiveRouter) Segments(ctx context.Context, runID, stepID string) ([]logstream.Segment, error) {
	a := r.of(runID)
	if a == nil {
		return nil, logstream.ErrNotArchived
	}
	return a.Segments(ctx, runID, stepID)
}
