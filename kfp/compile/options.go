// Package compile holds what the two KFP compilers (kfp/argo for KFP 1.x, kfp/ir for KFP 2.x)
// share: the Options both accept, and the target-neutral planning of a pipeline into steps
// (stable DNS-1123 names, transitive inputs, the kfbridge-step command line). Keeping the step
// runner's flags in one place means both targets always invoke the runner identically, as
// docs/step-runner.md requires.
package compile

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error that comes from bad Options or a pipeline the compilers
// cannot express; callers map it to a 4xx.
var ErrInvalid = errors.New("invalid compile input")

// Credential modes: how object-store credentials reach the step pods. Neither mode ever puts a
// key into the compiled output.
const (
	// CredentialsSecret exposes AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from a Kubernetes
	// Secret (Options.Credentials.SecretName) as secretKeyRef env vars.
	CredentialsSecret = "secret"
	// CredentialsIRSA adds nothing: the pod's service account (pipeline-runner) must carry the
	// IAM role (IRSA / workload identity), which injects AWS_ROLE_ARN and
	// AWS_WEB_IDENTITY_TOKEN_FILE.
	CredentialsIRSA = "irsa"
)

// Credentials says how the step runner authenticates to the object store.
type Credentials struct {
	// Mode is CredentialsSecret or CredentialsIRSA.
	Mode string
	// SecretName is the Kubernetes Secret holding the keys AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (CredentialsSecret only).
	SecretName string
}

// SecretKeyRef names one key of a Kubernetes Secret.
type SecretKeyRef struct {
	Name string
	Key  string
}

// Image holds per-image pull settings (Elyra keeps them on the runtime-image metadata).
type Image struct {
	// PullPolicy is Always, IfNotPresent or Never; empty leaves the Kubernetes default.
	PullPolicy string
	// PullSecrets are names of Kubernetes Secrets of type dockerconfigjson.
	PullSecrets []string
}

// Options configure a compilation. The zero value is not usable: the object-store location and the
// runner delivery fields of the chosen target must be set.
type Options struct {
	// RunnerImage is an image containing /usr/local/bin/kfbridge-step, e.g.
	// "ghcr.io/kfbridge/kfbridge:0.1.0". Required by the Argo target (init container).
	RunnerImage string
	// RunnerURL is a presigned object-store URL of the kfbridge-step binary (linux, the pods'
	// architecture) and RunnerSHA256 its hex sha256. Required by the IR target, whose steps
	// download and verify the runner before exec.
	RunnerURL    string
	RunnerSHA256 string

	// Endpoint is the object-store endpoint as the pods reach it ("http(s)://host:port").
	Endpoint string
	Bucket   string
	// Prefix is the object prefix inside the bucket (cos_object_prefix); may be empty.
	Prefix string
	// Region is the S3 region passed as --region; may be empty.
	Region string

	// RunID identifies the run. Empty means the target's own run placeholder (Argo
	// {{workflow.uid}}, IR {{$.pipeline_job_uuid}}), so that one compiled package can be run
	// many times, each run writing to its own directory.
	RunID string
	// RunDir is the run directory (--cos-directory). Empty means storage.RunDir(Prefix, run ID).
	RunDir string
	// ArchiveKeys maps node ID -> bucket-relative key of its content-addressed dependency archive
	// (storage.ArchiveKey), as computed by packaging. A node without a key falls back to Elyra's
	// layout: archive "<file stem>-<node id>.tar.gz" inside the run directory.
	ArchiveKeys map[string]string

	// Credentials select how object-store credentials reach the pods.
	Credentials Credentials

	// PushURL is the kfbridge service base URL steps push log lines to; empty disables push.
	PushURL string
	// PushToken is the Secret key holding the per-run push token (env KFBRIDGE_PUSH_TOKEN).
	// Required when PushURL is set.
	PushToken SecretKeyRef

	// Images holds pull settings keyed by image reference (node runtime images and RunnerImage).
	Images map[string]Image

	// SDKVersion is the version written where the KFP SDK writes its own (Argo
	// pipelines.kubeflow.org/kfp_sdk_version, IR sdkVersion). Empty: a target default.
	SDKVersion string

	// Clock returns the compilation time (Argo pipeline_compilation_time annotation). Nil means
	// time.Now; tests and golden files set a fixed clock so output is byte-for-byte stable.
	Clock func() time.Time

	// NoVisualizations drops the optional mlpipeline-ui-metadata and mlpipeline-metrics output
	// artifacts from Argo templates (for clusters without an Argo artifact repository).
	NoVisualizations bool
}

// Now is the compilation time according to o.Clock.
func (o Options) Now() time.Time {
	if o.Clock != nil {
		return o.Clock().UTC()
	}
	return time.Now().UTC()
}

// Validate checks the options both targets need. Target-specific runner fields are checked by
// the compilers themselves.
func (o Options) Validate() error {
	var problems []string
	if o.Endpoint == "" {
		problems = append(problems, "object-store endpoint is empty")
	} else if !strings.HasPrefix(o.Endpoint, "http://") && !strings.HasPrefix(o.Endpoint, "https://") {
		// file:// stores only work for the local runtime: a pod cannot see the server's disk.
		problems = append(problems, fmt.Sprintf("object-store endpoint %q must be http:// or https:// for KFP", o.Endpoint))
	}
	if o.Bucket == "" {
		problems = append(problems, "bucket is empty")
	}
	switch o.Credentials.Mode {
	case CredentialsSecret:
		if o.Credentials.SecretName == "" {
			problems = append(problems, "credentials mode secret needs a secret name")
		}
	case CredentialsIRSA:
	default:
		problems = append(problems, fmt.Sprintf("credentials mode %q is not %q or %q", o.Credentials.Mode, CredentialsSecret, CredentialsIRSA))
	}
	if o.PushURL != "" && (o.PushToken.Name == "" || o.PushToken.Key == "") {
		problems = append(problems, "push URL set without a push-token secret reference")
	}
	for img, io := range o.Images {
		switch io.PullPolicy {
		case "", "Always", "IfNotPresent", "Never":
		default:
			problems = append(problems, fmt.Sprintf("image %q: pull policy %q is not Always, IfNotPresent or Never", img, io.PullPolicy))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("compile: options: %s: %w", strings.Join(problems, "; "), ErrInvalid)
	}
	return nil
}
