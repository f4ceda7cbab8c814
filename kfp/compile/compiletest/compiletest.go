// Package compiletest provides what the tests of both KFP compilers share: the generic pipelines
// of the Elyra corpus, a pipeline that sets every node property, a generated large pipeline for
// benchmarks, fixed Options, and the credential values tests must never find in compiled output.
// It is imported by tests only.
package compiletest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
)

// CorpusDir is the shared corpus of real Elyra pipeline files.
const CorpusDir = "/work/shared/corpus/elyra"

// Secret values configured in Options' surroundings (the server knows them; the compilers must
// not leak them). Options only ever hold references, so these strings appearing in output would
// mean a credential was copied in from somewhere.
const (
	AccessKey = "AKIAKFBRIDGETESTKEY1"
	SecretKey = "kfbridge-test-secret/Key+Value0123456789"
	PushToken = "kfb_push_token_7f3e9c1d2b4a"
)

// Case is one pipeline to compile in golden tests.
type Case struct {
	// Name is the golden file stem.
	Name     string
	Pipeline *pipeline.Pipeline
}

// Corpus returns the generic pipelines of the Elyra corpus: files that parse without error
// issues into a pipeline with at least one node, every node generic, and a runtime that is not
// Airflow. Cases are sorted by name. With CI=true a missing corpus fails the test.
func Corpus(t testing.TB) []Case {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(CorpusDir, "*.pipeline"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no corpus files in %s", CorpusDir)
		}
		t.Skipf("no corpus files in %s", CorpusDir)
	}
	var cases []Case
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, issues := pipeline.Parse(data)
		if p == nil || pipeline.HasErrors(issues) || len(p.Nodes) == 0 || p.RuntimeType == pipeline.RuntimeAirflow {
			continue
		}
		generic := true
		for _, n := range p.Nodes {
			if n.Kind == "" {
				generic = false
			}
		}
		if !generic {
			continue
		}
		cases = append(cases, Case{Name: strings.TrimSuffix(filepath.Base(f), ".pipeline"), Pipeline: p})
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases
}

// Options returns fixed options with every optional feature on: a credentials Secret, push, pull
// settings, a prefix and region, an archive key for node "n-train" of Full, and a fixed clock.
func Options() compile.Options {
	return compile.Options{
		RunnerImage:  "ghcr.io/kfbridge/kfbridge:0.1.0",
		RunnerURL:    "http://minio.kubeflow:9000/kfbridge/runner/kfbridge-step-0.1.0?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00ff",
		RunnerSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Endpoint:     "http://minio.kubeflow:9000",
		Bucket:       "kfbridge",
		Prefix:       "team-a",
		Region:       "us-east-1",
		ArchiveKeys:  map[string]string{"n-train": "team-a/archives/train-0123456789abcdef0123.tar.gz"},
		Credentials:  compile.Credentials{Mode: compile.CredentialsSecret, SecretName: "kfbridge-s3"},
		PushURL:      "http://kfbridge.kubeflow:8080",
		PushToken:    compile.SecretKeyRef{Name: "kfbridge-push", Key: "token"},
		Images: map[string]compile.Image{
			"ghcr.io/kfbridge/kfbridge:0.1.0": {PullPolicy: "IfNotPresent"},
			"registry.example.com/ml/torch:2.3": {
				PullPolicy:  "Always",
				PullSecrets: []string{"regcred"},
			},
		},
		Clock: func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) },
	}
}

// Full is a pipeline whose nodes together set every Elyra node property and every parameter
// type: resources with GPU vendor, env vars, secrets, PVC mounts with sub_path/read_only,
// tolerations, pod labels and annotations, shared memory, pull policy and secrets (through
// Options().Images), disabled caching, comments, pipeline parameters, and a diamond of
// dependencies whose transitive inputs must reach the last node.
func Full() *pipeline.Pipeline {
	no := true
	return &pipeline.Pipeline{
		Name:        "Full Features: Demo",
		Description: "every node property",
		Source:      "full.pipeline",
		RuntimeType: pipeline.RuntimeKFP,
		Version:     8,
		Parameters: []pipeline.Parameter{
			{Name: "epochs", Type: pipeline.ParamInteger, Default: float64(10), Description: "training epochs"},
			{Name: "lr", Type: pipeline.ParamFloat, Default: 0.01},
			{Name: "dataset", Type: pipeline.ParamString, Required: true},
			{Name: "dry_run", Type: pipeline.ParamBool, Default: false, Value: true},
			{Name: "note", Type: pipeline.ParamString},
		},
		Nodes: []*pipeline.Node{
			{
				ID: "n-load", Label: "Load data", Op: pipeline.OpNotebook, Kind: pipeline.KindNotebook,
				Filename: "notebooks/load.ipynb", RuntimeImage: "registry.example.com/ml/torch:2.3",
				Dependencies: []string{"util.py"}, Outputs: []string{"data/raw.csv"},
				Env:                []pipeline.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}},
				PipelineParameters: []string{"dataset"},
				Comment:            "Loads the raw dataset.\nSecond line.",
			},
			{
				ID: "n-clean", Label: "clean", Op: pipeline.OpPython, Kind: pipeline.KindPython,
				Filename: "scripts/clean.py", RuntimeImage: "python:3.12-slim",
				Parents: []string{"n-load"}, Outputs: []string{"data/clean.csv", "reports/"},
				Volumes: []pipeline.Volume{
					{Path: "/mnt/cache", PVCName: "shared-cache"},
					{Path: "/mnt/ref", PVCName: "shared-cache", SubPath: "ref/v1", ReadOnly: true},
				},
				DisableCaching: &no,
			},
			{
				ID: "n-feat", Label: "features", Op: pipeline.OpR, Kind: pipeline.KindR,
				Filename: "r/features.r", RuntimeImage: "rocker/r-ver:4.4",
				Parents: []string{"n-load"}, Outputs: []string{"data/features.parquet"},
				Tolerations: []pipeline.Toleration{
					{Key: "dedicated", Operator: "Equal", Value: "r", Effect: "NoSchedule"},
					{Operator: "Exists"},
				},
				Annotations: []pipeline.KeyValue{{Key: "example.com/owner", Value: "team-a"}},
				PodLabels:   []pipeline.KeyValue{{Key: "team", Value: "a"}, {Key: "flag"}},
			},
			{
				ID: "n-train", Label: "Train model (GPU) — a very long label that goes well beyond sixty-three characters",
				Op: pipeline.OpNotebook, Kind: pipeline.KindNotebook,
				Filename: "notebooks/train.ipynb", RuntimeImage: "registry.example.com/ml/torch:2.3",
				Parents: []string{"n-clean", "n-feat"}, Outputs: []string{"model/*.pt"},
				Secrets: []pipeline.SecretEnv{
					{Name: "WANDB_API_KEY", Secret: "wandb", Key: "api-key"},
					{Name: "HF_TOKEN", Secret: "hf", Key: "token"},
				},
				SharedMemSizeGB: 2,
				Resources: pipeline.Resources{
					CPU: 2, CPULimit: 4, MemoryGB: 8, MemoryLimitGB: 16.5, GPU: 1, GPUVendor: "amd.com/gpu",
				},
				PipelineParameters: []string{"epochs", "lr", "dry_run", "note"},
			},
			{
				ID: "n-report", Label: "clean", Op: pipeline.OpPython, Kind: pipeline.KindPython,
				Filename: "scripts/report.py", RuntimeImage: "python:3.12-slim",
				Parents:   []string{"n-train"},
				Resources: pipeline.Resources{GPU: 2},
			},
		},
	}
}

// Generated returns a layered pipeline of n nodes for benchmarks: layers of ten nodes, each
// node depending on two nodes of the previous layer, every third node declaring an output and
// every node carrying typical properties.
func Generated(n int) *pipeline.Pipeline {
	p := &pipeline.Pipeline{
		Name:       fmt.Sprintf("generated-%d", n),
		Parameters: []pipeline.Parameter{{Name: "size", Type: pipeline.ParamInteger, Default: float64(3)}},
	}
	const width = 10
	for i := 0; i < n; i++ {
		node := &pipeline.Node{
			ID:                 fmt.Sprintf("node-%04d", i),
			Label:              fmt.Sprintf("Step %d", i),
			Op:                 pipeline.OpPython,
			Kind:               pipeline.KindPython,
			Filename:           fmt.Sprintf("steps/step_%d.py", i),
			RuntimeImage:       "python:3.12-slim",
			Env:                []pipeline.EnvVar{{Name: "STEP", Value: fmt.Sprint(i)}},
			Resources:          pipeline.Resources{CPU: 0.5, MemoryGB: 1},
			Volumes:            []pipeline.Volume{{Path: "/data", PVCName: "data"}},
			PipelineParameters: []string{"size"},
		}
		if i%3 == 0 {
			node.Outputs = []string{fmt.Sprintf("out/step_%d.csv", i)}
		}
		if layer := i / width; layer > 0 {
			prev := (layer-1)*width + i%width
			node.Parents = []string{fmt.Sprintf("node-%04d", prev), fmt.Sprintf("node-%04d", (layer-1)*width+(i+1)%width)}
		}
		p.Nodes = append(p.Nodes, node)
	}
	return p
}

// AssertNoSecrets fails the test if any configured credential value appears in out.
func AssertNoSecrets(t testing.TB, name string, out []byte) {
	t.Helper()
	for _, s := range []string{AccessKey, SecretKey, PushToken} {
		if strings.Contains(string(out), s) {
			t.Errorf("%s: compiled output contains the credential value %q", name, s)
		}
	}
}
