package server

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
)

// DefaultRunnerImage is the image whose kfbridge-step the Argo target's init container copies.
func DefaultRunnerImage() string {
	v := Version
	if v == "" || v == "dev" {
		v = "latest"
	}
	return "ghcr.io/kfbridge/kfbridge:" + v
}

// exportSettings are the object-store and delivery settings of a compilation.
type exportSettings struct {
	s3          S3Config
	cosSecret   string
	cosAuth     string
	runnerImage string
	stepBinary  string
}

func (e exportSettings) credentials() (compile.Credentials, error) {
	switch e.cosAuth {
	case "secret", "KUBERNETES_SECRET":
		return compile.Credentials{Mode: compile.CredentialsSecret, SecretName: e.cosSecret}, nil
	case "irsa", "AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS":
		return compile.Credentials{Mode: compile.CredentialsIRSA}, nil
	}
	return compile.Credentials{}, fmt.Errorf("--cos-auth %q: want secret or irsa (keys are never put into a pipeline)", e.cosAuth)
}

// export compiles p; it opens the store unless noUpload.
func (e exportSettings) export(ctx context.Context, getenv func(string) string, p *pipeline.Pipeline, root, format string, noUpload bool) ([]byte, error) {
	creds, err := e.credentials()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runs.ErrInvalid, err)
	}
	if e.s3.Endpoint == "" || e.s3.Bucket == "" {
		return nil, fmt.Errorf("%w: a KFP package needs an S3 object store its pods can reach: set --s3-endpoint and --s3-bucket (or KFBRIDGE_S3_ENDPOINT/KFBRIDGE_S3_BUCKET)", runs.ErrInvalid)
	}
	cfg := runs.CompileConfig{
		Format: format, Root: root, NoUpload: noUpload,
		Endpoint: e.s3.Endpoint, Bucket: e.s3.Bucket, Region: e.s3.Region, Prefix: e.s3.Prefix,
		RunnerImage: e.runnerImage, RunnerBinary: e.stepBinary, Credentials: creds,
	}
	if !noUpload {
		cfg.Store, err = storage.Open(ctx, storage.Config{Endpoint: e.s3.Endpoint, Bucket: e.s3.Bucket, Region: e.s3.Region,
			AccessKey: e.s3.AccessKey, SecretKey: e.s3.SecretKey, Getenv: getenv})
		if err != nil {
			return nil, fmt.Errorf("open object store: %w", err)
		}
	}
	out, _, err := runs.Compile(ctx, p, cfg)
	return out, err
}

// exportCmd implements `kfbridge export FILE --format argo|kfp-v2 [-o FILE] …`. It needs no server.
func exportCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kfbridge export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge export FILE --format argo|kfp-v2 [-o FILE] [--workspace DIR] [--s3-endpoint URL --s3-bucket NAME] [--no-upload]")
		fs.PrintDefaults()
	}
	format := fs.String("format", "argo", "argo (KFP 1.x Argo Workflow) or kfp-v2 (KFP 2.x IR)")
	out := fs.String("o", "", "output file (default: standard output)")
	workspace := fs.String("workspace", "", "workspace root (default: the current directory)")
	noUpload := fs.Bool("no-upload", false, "compute archive hashes without uploading (no reachable store needed; the package runs once the archives are uploaded)")
	var e exportSettings
	fs.StringVar(&e.s3.Endpoint, "s3-endpoint", getenv("KFBRIDGE_S3_ENDPOINT"), "S3 endpoint as the pods reach it (env KFBRIDGE_S3_ENDPOINT)")
	fs.StringVar(&e.s3.Bucket, "s3-bucket", getenv("KFBRIDGE_S3_BUCKET"), "bucket (env KFBRIDGE_S3_BUCKET)")
	fs.StringVar(&e.s3.Prefix, "s3-prefix", getenv("KFBRIDGE_S3_PREFIX"), "object prefix (env KFBRIDGE_S3_PREFIX)")
	fs.StringVar(&e.s3.Region, "s3-region", getenv("KFBRIDGE_S3_REGION"), "region (env KFBRIDGE_S3_REGION)")
	fs.StringVar(&e.cosAuth, "cos-auth", "secret", "how pods get object-store credentials: secret (a Kubernetes Secret) or irsa")
	fs.StringVar(&e.cosSecret, "cos-secret", "kfbridge-s3", "Kubernetes Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&e.runnerImage, "runner-image", DefaultRunnerImage(), "image containing /usr/local/bin/kfbridge-step (argo)")
	fs.StringVar(&e.stepBinary, "step-binary", getenv("KFBRIDGE_STEP_BINARY"), "linux kfbridge-step to deliver to kfp-v2 steps (default: beside this binary, then PATH)")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *format != runs.FormatArgo && *format != runs.FormatKFPv2 {
		return usageErr("--format %q: want argo or kfp-v2", *format)
	}
	e.s3.AccessKey, e.s3.SecretKey = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if e.stepBinary == "" {
		if cmd, err := stepCommand(""); err == nil && len(cmd) == 1 {
			e.stepBinary = cmd[0]
		}
	}
	root, rel, err := locate(file, *workspace)
	if err != nil {
		return err
	}
	p, issues, err := loadLocal(root, rel)
	if err != nil {
		return err
	}
	if p == nil {
		for _, is := range issues {
			fmt.Fprintln(stderr, is.String())
		}
		return &exitError{code: 1, err: fmt.Errorf("%s: invalid pipeline", file)}
	}
	data, err := e.export(ctx, getenv, p, root, *format, *noUpload)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(data)
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%s, %d bytes)\n", *out, *format, len(data))
	return nil
}
