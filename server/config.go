package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Config is everything `kfbridge serve` is configured with, from flags and the environment. It is
// built and validated once, here, and passed down as values: nothing else reads the environment.
type Config struct {
	Addr        string
	Workspace   string
	DataDir     string
	MetadataDir string // runtimes and runtime images, Elyra's layout; default <DataDir>/metadata
	Token       string
	Origins     []string
	StepBinary  string
	Parallelism int
	MaxBundle   int64

	S3 S3Config
	// How KFP pods get object-store credentials (a Secret name, or IRSA), and the image that
	// carries kfbridge-step; used by export and KFP runtimes without their own settings.
	CosAuth, CosSecret, RunnerImage string

	// TrustProxyAuth delegates authentication to Jupyter (kfbridge behind jupyter-server-proxy,
	// listening on loopback only); BaseURL is kfbridge's external root path behind a proxy.
	TrustProxyAuth bool
	BaseURL        string
}

// S3Config selects S3/MinIO as the object store instead of the local directory.
type S3Config struct {
	Endpoint, Bucket, Prefix, Region string
	AccessKey, SecretKey             string
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// envOr returns the environment value of key, or def.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// defaultDataDir follows the XDG convention, like Jupyter's data directory.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "kfbridge")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "kfbridge")
	}
	return filepath.Join(os.TempDir(), "kfbridge")
}

func parseServeConfig(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("kfbridge serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kfbridge serve [--addr HOST:PORT] [--workspace DIR] [--data-dir DIR] [--token T] [flags]")
		fs.PrintDefaults()
	}
	var origins stringList
	fs.StringVar(&c.Addr, "addr", envOr(getenv, "KFBRIDGE_ADDR", "127.0.0.1:8765"), "listen address (env KFBRIDGE_ADDR)")
	fs.StringVar(&c.Workspace, "workspace", envOr(getenv, "KFBRIDGE_WORKSPACE", "."), "workspace root; every submitted path is confined to it (env KFBRIDGE_WORKSPACE)")
	fs.StringVar(&c.DataDir, "data-dir", envOr(getenv, "KFBRIDGE_DATA_DIR", defaultDataDir(getenv)), "run records, local object store and step working directories (env KFBRIDGE_DATA_DIR)")
	fs.StringVar(&c.MetadataDir, "metadata-dir", getenv("KFBRIDGE_METADATA_DIR"), "runtime configurations and runtime images, in Elyra's layout; point it at Jupyter's <data dir>/metadata to share Elyra's (default <data-dir>/metadata; env KFBRIDGE_METADATA_DIR)")
	fs.StringVar(&c.Token, "token", getenv("KFBRIDGE_TOKEN"), "API token; generated and printed when empty (env KFBRIDGE_TOKEN)")
	fs.Var(&origins, "allow-origin", "extra browser origin allowed to open websockets, e.g. the JupyterLab URL (repeatable; env KFBRIDGE_ALLOW_ORIGINS, comma-separated)")
	fs.StringVar(&c.StepBinary, "step-binary", getenv("KFBRIDGE_STEP_BINARY"), "path of kfbridge-step for the local runtime (default: beside this binary, then PATH)")
	fs.IntVar(&c.Parallelism, "parallelism", 4, "steps the local runtime runs at once")
	fs.Int64Var(&c.MaxBundle, "max-bundle-bytes", 512<<20, "largest uploaded bundle accepted")
	fs.StringVar(&c.S3.Endpoint, "s3-endpoint", getenv("KFBRIDGE_S3_ENDPOINT"), "S3/MinIO endpoint URL; empty uses the local directory store (env KFBRIDGE_S3_ENDPOINT)")
	fs.StringVar(&c.S3.Bucket, "s3-bucket", getenv("KFBRIDGE_S3_BUCKET"), "S3 bucket (env KFBRIDGE_S3_BUCKET)")
	fs.StringVar(&c.S3.Prefix, "s3-prefix", getenv("KFBRIDGE_S3_PREFIX"), "object prefix, Elyra's cos_object_prefix (env KFBRIDGE_S3_PREFIX)")
	fs.StringVar(&c.S3.Region, "s3-region", getenv("KFBRIDGE_S3_REGION"), "S3 region (env KFBRIDGE_S3_REGION)")
	fs.StringVar(&c.CosAuth, "cos-auth", envOr(getenv, "KFBRIDGE_COS_AUTH", "secret"), "how KFP pods get object-store credentials: secret or irsa (env KFBRIDGE_COS_AUTH)")
	fs.StringVar(&c.CosSecret, "cos-secret", envOr(getenv, "KFBRIDGE_COS_SECRET", "kfbridge-s3"), "Kubernetes Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for KFP pods (env KFBRIDGE_COS_SECRET)")
	fs.StringVar(&c.RunnerImage, "runner-image", envOr(getenv, "KFBRIDGE_RUNNER_IMAGE", DefaultRunnerImage()), "image containing kfbridge-step for KFP pods (env KFBRIDGE_RUNNER_IMAGE)")
	fs.BoolVar(&c.TrustProxyAuth, "trust-proxy-auth", getenv("KFBRIDGE_TRUST_PROXY_AUTH") == "true", "take requests without kfbridge's token as authenticated by Jupyter (jupyter-server-proxy); state changes need Jupyter's X-XSRFToken matching its _xsrf cookie; only with a loopback --addr (env KFBRIDGE_TRUST_PROXY_AUTH=true)")
	fs.StringVar(&c.BaseURL, "base-url", getenv("KFBRIDGE_BASE_URL"), "kfbridge's external root path behind a proxy, e.g. /user/alice/elyra, for Location headers and links; with --trust-proxy-auth the proxy's X-Forwarded-Prefix wins (env KFBRIDGE_BASE_URL)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Origins = origins
	if v := getenv("KFBRIDGE_ALLOW_ORIGINS"); v != "" {
		c.Origins = append(c.Origins, strings.Split(v, ",")...)
	}
	// Keys come only from the environment, never from flags (they would show in `ps`).
	c.S3.AccessKey, c.S3.SecretKey = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	ws, err := filepath.Abs(c.Workspace)
	if err == nil {
		ws, err = filepath.EvalSymlinks(ws)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("workspace %q: %w", c.Workspace, err))
	} else if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("workspace %q is not a directory", c.Workspace))
	}
	c.Workspace = ws
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		errs = append(errs, fmt.Errorf("data dir: %w", err))
	}
	if c.MetadataDir == "" {
		c.MetadataDir = filepath.Join(c.DataDir, "metadata")
	} else if c.MetadataDir, err = filepath.Abs(c.MetadataDir); err != nil {
		errs = append(errs, fmt.Errorf("metadata dir: %w", err))
	}
	if (c.S3.Endpoint == "") != (c.S3.Bucket == "") {
		errs = append(errs, errors.New("--s3-endpoint and --s3-bucket go together"))
	}
	if c.TrustProxyAuth && !loopbackAddr(c.Addr) {
		errs = append(errs, fmt.Errorf("--trust-proxy-auth needs a loopback --addr (127.0.0.1:PORT or [::1]:PORT), not %q: anyone who can reach kfbridge would be trusted", c.Addr))
	}
	if c.BaseURL != "" && (!strings.HasPrefix(c.BaseURL, "/") || strings.Contains(c.BaseURL, "//")) {
		errs = append(errs, fmt.Errorf("--base-url %q must be an absolute path such as /user/alice/elyra", c.BaseURL))
	}
	if c.Parallelism < 1 {
		errs = append(errs, errors.New("--parallelism must be at least 1"))
	}
	return errors.Join(errs...)
}

// loopbackAddr reports whether addr (HOST:PORT) listens on a loopback address only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
