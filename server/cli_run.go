package server

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// runEmbedded implements `kfbridge run FILE`: it starts a server on a free loopback port with the
// embedded defaults (local runtime, local-directory store), submits FILE by path and follows the
// run. It is the whole product in one command, with nothing to configure.
func runEmbedded(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kfbridge run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge run FILE [--workspace DIR] [--data-dir DIR] [--json]")
		fs.PrintDefaults()
	}
	var o submitOptions
	o.register(fs)
	dataDir := fs.String("data-dir", envOr(getenv, "KFBRIDGE_DATA_DIR", defaultDataDir(getenv)), "data directory (env KFBRIDGE_DATA_DIR)")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	root, rel, err := locate(file, o.workspace)
	if err != nil {
		return err
	}
	cfg := &Config{Addr: "127.0.0.1:0", Workspace: root, DataDir: *dataDir, Token: randToken(), Parallelism: 4, MaxBundle: 512 << 20}
	if err := cfg.validate(); err != nil {
		return &exitError{code: 2, err: err}
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan instance, 1)
	served := make(chan error, 1)
	// The embedded server logs only warnings, so the terminal shows the run, not the service.
	go func() { served <- serve(sctx, cfg, getenv, io.Discard, &levelFilter{w: stderr}, ready) }()
	var inst instance
	select {
	case inst = <-ready:
	case err := <-served:
		return err
	}
	o.remotePath, o.follow = true, true // the embedded server lives only as long as this command
	err = submitAndFollow(ctx, newClient(inst.URL, inst.Token), rel, o, stdout, stderr)
	stop()
	<-served
	return err
}

// levelFilter passes only warning and error records of the text logger.
type levelFilter struct{ w io.Writer }

func (l *levelFilter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "level=WARN") || strings.Contains(string(p), "level=ERROR") {
		return l.w.Write(p)
	}
	return len(p), nil
}
