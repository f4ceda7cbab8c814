package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
)

// Version is set at build time.
var Version = "dev"

// shutdownGrace bounds graceful shutdown: open requests finish, websockets are closed, active
// local steps get SIGTERM.
const shutdownGrace = 15 * time.Second

func errNotFound(r *http.Request) error {
	return fmt.Errorf("%w: no endpoint %s %s", runs.ErrNotFound, r.Method, r.URL.Path)
}

// instance is a running server.
type instance struct {
	URL   string // base URL clients use, e.g. http://127.0.0.1:8765
	Token string
}

// serve runs the server until ctx is done. ready, if not nil, receives the instance once it accepts
// connections.
func serve(ctx context.Context, cfg *Config, getenv func(string) string, stdout, stderr io.Writer, ready chan<- instance) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	generated := false
	if cfg.Token == "" {
		cfg.Token = randToken()
		generated = true
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	storeCfg := storage.Config{Endpoint: "file://" + filepath.Join(cfg.DataDir, "store"), Bucket: "kfbridge", Getenv: getenv}
	prefix := ""
	if cfg.S3.Endpoint != "" {
		storeCfg = storage.Config{Endpoint: cfg.S3.Endpoint, Bucket: cfg.S3.Bucket, Region: cfg.S3.Region,
			AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey, Getenv: getenv}
		prefix = cfg.S3.Prefix
	}
	store, err := storage.Open(ctx, storeCfg)
	if err != nil {
		return fmt.Errorf("open object store: %w", err)
	}
	stepCmd, err := stepCommand(cfg.StepBinary)
	if err != nil {
		return err
	}
	runtimes, err := runs.NewRuntimeStore(cfg.MetadataDir, runs.RuntimeStoreOptions{DefaultRunnerImage: cfg.RunnerImage})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// Live logs: rings in memory, spools under the data dir, and the archive in the object store
	// for steps this process does not hold (after a restart) or cannot receive pushes from.
	logArchive := logstream.StoreArchive{Store: store, Prefix: prefix}
	// KFP runs keep their step logs in their runtime's object store; the router sends the log
	// store's archive reads (and segment tails) for each run to the right store.
	archives := runs.NewArchiveRouter(logArchive)
	spoolDir := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		ln.Close()
		return fmt.Errorf("create spool dir: %w", err)
	}
	logs := logstream.New(logstream.Options{SpoolDir: spoolDir, Archive: archives})
	defer logs.Close()
	// Steps reach the object store with the same settings, but never see the keys as flags: the
	// local runtime passes them in the environment, like a Kubernetes Secret would.
	stepStore := storeCfg
	stepStore.AccessKey, stepStore.SecretKey, stepStore.Getenv = "", "", nil
	kfpOpts := runs.KFPOptions{Getenv: getenv, Logger: log, Images: runtimeImages(runtimes)}
	if len(stepCmd) == 1 {
		kfpOpts.RunnerBinary = stepCmd[0]
	}
	if v := getenv("KFBRIDGE_KFP_POLL_INTERVAL"); v != "" {
		// How often KFP runs are polled at first (Go duration, default 2s); mostly for tests.
		if kfpOpts.PollInterval, err = time.ParseDuration(v); err != nil {
			ln.Close()
			return fmt.Errorf("KFBRIDGE_KFP_POLL_INTERVAL: %w", err)
		}
		kfpOpts.MaxPollInterval = 4 * kfpOpts.PollInterval
	}
	if v := getenv("KFBRIDGE_KFP_REQUEST_TIMEOUT"); v != "" {
		// Bound of one KFP API request (Go duration, default 30s); mostly for tests.
		if kfpOpts.Client.RequestTimeout, err = time.ParseDuration(v); err != nil {
			ln.Close()
			return fmt.Errorf("KFBRIDGE_KFP_REQUEST_TIMEOUT: %w", err)
		}
	}
	mgr, err := runs.NewManager(runs.Config{
		DataDir:     cfg.DataDir,
		Store:       store,
		StoreConfig: stepStore,
		Prefix:      prefix,
		Logs:        logs,
		Logger:      log,
		Runtimes:    &runs.KFPResolver{Configs: runtimes, Options: kfpOpts},
		Archives:    archives,
		Runtime: &runs.Local{
			StepCommand: stepCmd,
			WorkDir:     filepath.Join(cfg.DataDir, "work"),
			PushURL:     fmt.Sprintf("http://127.0.0.1:%d", port),
			Parallelism: cfg.Parallelism,
			Env:         stepEnv(getenv, cfg),
			Logger:      log,
		},
	})
	if err != nil {
		ln.Close()
		return err
	}

	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	exp := exportSettings{s3: cfg.S3, cosAuth: cfg.CosAuth, cosSecret: cfg.CosSecret, runnerImage: cfg.RunnerImage}
	if len(stepCmd) == 1 {
		exp.stepBinary = stepCmd[0]
	}
	exportFn := func(ctx context.Context, p *pipeline.Pipeline, root, format string, noUpload bool) ([]byte, error) {
		return exp.export(ctx, getenv, p, root, format, noUpload)
	}
	elyra := handlers.ElyraConfig{Log: log, Workspace: cfg.Workspace, Runs: mgr, Runtimes: runtimes, Export: exportFn,
		Submit: elyraSubmit(mgr), Paths: handlers.ProxyPaths{BaseURL: cfg.BaseURL, TrustForwarded: cfg.TrustProxyAuth}, Spec: handlers.ElyraOpenAPI}
	addRoutes(r, deps{log: log, cfg: cfg, runs: mgr, logs: logs, archive: logArchive, origins: handlers.OriginChecker{Allowed: cfg.Origins}, export: exportFn, runtimes: runtimes, elyra: elyra})
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	host := cfg.Addr[:strings.LastIndex(cfg.Addr, ":")]
	if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
		host = "127.0.0.1"
	}
	inst := instance{URL: fmt.Sprintf("http://%s:%d", host, port), Token: cfg.Token}
	log.Info("kfbridge serving", "addr", ln.Addr().String(), "workspace", cfg.Workspace, "data_dir", cfg.DataDir,
		"store", store.Location(), "runtime", "local", "version", Version)
	if generated {
		// Like Jupyter: the token is printed once, as a ready-to-use URL.
		fmt.Fprintf(stdout, "kfbridge is running at:\n    %s/?token=%s\n", inst.URL, cfg.Token)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready <- inst
	}
	select {
	case err := <-errc:
		mgr.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	mgr.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	return nil
}

// runtimeImages returns the pull settings of the stored runtime images, for KFP compilation.
func runtimeImages(store *runs.RuntimeStore) func() map[string]compile.Image {
	return func() map[string]compile.Image {
		imgs, _ := store.ListImages()
		out := map[string]compile.Image{}
		for _, im := range imgs {
			ci := compile.Image{PullPolicy: im.Metadata.PullPolicy}
			if im.Metadata.PullSecret != "" {
				ci.PullSecrets = []string{im.Metadata.PullSecret}
			}
			out[im.Metadata.ImageName] = ci
		}
		return out
	}
}

// stepCommand finds the step runner: the configured path, kfbridge-step beside this executable,
// kfbridge-step on PATH, or this executable's own `step` subcommand (the same runner code, so
// `go run ./cmd/kfbridge` works without a second binary).
func stepCommand(configured string) ([]string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return nil, fmt.Errorf("step binary: %w", err)
		}
		return []string{configured}, nil
	}
	self, err := os.Executable()
	if err == nil {
		beside := filepath.Join(filepath.Dir(self), "kfbridge-step")
		if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
			return []string{beside}, nil
		}
	}
	if p, err := exec.LookPath("kfbridge-step"); err == nil {
		return []string{p}, nil
	}
	if self == "" {
		return nil, errors.New("cannot find kfbridge-step: pass --step-binary")
	}
	return []string{self, "step"}, nil
}

// stepEnv is the environment local steps start with: the server's, minus kfbridge's own secrets,
// plus the object-store keys (as a pod would get them from a Secret).
func stepEnv(getenv func(string) string, cfg *Config) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KFBRIDGE_") || k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY" {
			continue
		}
		env = append(env, kv)
	}
	if cfg.S3.AccessKey != "" {
		env = append(env, "AWS_ACCESS_KEY_ID="+cfg.S3.AccessKey, "AWS_SECRET_ACCESS_KEY="+cfg.S3.SecretKey)
	}
	return env
}

func randToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
