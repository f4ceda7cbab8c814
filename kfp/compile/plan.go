package compile

import (
	"fmt"
	"math/bits"
	"path"
	"strconv"
	"strings"

	"github.com/kfbridge/kfbridge/pipeline"
)

// RunnerPath is where the runner binary lives inside the kfbridge image; the Argo init container
// copies it from there.
const RunnerPath = "/usr/local/bin/kfbridge-step"

// Paths where the step runner leaves KFP visualization files for Argo to collect as the
// mlpipeline-ui-metadata and mlpipeline-metrics output artifacts (docs/step-runner.md, "KFP
// visualizations").
const (
	UIMetadataPath = "/tmp/kfbridge/mlpipeline-ui-metadata.json"
	MetricsPath    = "/tmp/kfbridge/mlpipeline-metrics.json"
)

// Labels and annotations kfbridge puts on every step pod, in both targets.
const (
	LabelPipelineName = "kfbridge/pipeline-name"
	LabelNodeName     = "kfbridge/node-name"
	LabelRunID        = "kfbridge/run-id"
	AnnotationNodeDoc = "kfbridge/node-user-doc"
	AnnotationNodeID  = "kfbridge/node-id"
)

// Environment variables the compilers set for the runner (docs/step-runner.md).
const (
	EnvAccessKey = "AWS_ACCESS_KEY_ID"
	EnvSecretKey = "AWS_SECRET_ACCESS_KEY"
	EnvPushToken = "KFBRIDGE_PUSH_TOKEN"
)

// maxNameLen bounds generated names so that targets can add prefixes ("comp-", "exec-") and
// Kubernetes can add pod-name suffixes while staying inside 63 characters.
const maxNameLen = 50

// Plan is a pipeline checked and prepared for compilation: stable names and the inputs of every
// step. Steps keep the pipeline's node order, so output derived from a plan is deterministic.
type Plan struct {
	Pipeline *pipeline.Pipeline
	// Name is the pipeline name as a DNS-1123 label.
	Name  string
	Steps []*Step
	byID  map[string]*Step
}

// Step is one node of a plan.
type Step struct {
	Node *pipeline.Node
	// Name is a DNS-1123 label, unique in the plan and distinct from the reserved names given to
	// NewPlan.
	Name string
	// Parents are the steps this one depends on directly, in the node's link order.
	Parents []*Step
	// Inputs are the declared outputs of every ancestor (transitively), in node order, without
	// duplicates: what the runner downloads before the node runs.
	Inputs []string
	// Params are the pipeline parameters passed to this node, in the node's order.
	Params []pipeline.Parameter
}

// SizeHint estimates the bytes of a compiled document for the plan: a fixed share per step plus
// the file lists that grow with the pipeline's depth.
func (pl *Plan) SizeHint() int {
	n := 0
	for _, s := range pl.Steps {
		n += 3072
		for _, in := range s.Inputs {
			n += len(in) + 1
		}
	}
	return n
}

// Step returns the step of the node with the given ID, or nil.
func (pl *Plan) Step(nodeID string) *Step { return pl.byID[nodeID] }

// NewPlan checks that p can be compiled (generic nodes only, known parents, no cycles, known
// parameters) and names its steps. reserved are names the target already uses (for example the
// Argo entrypoint template) that steps must not take.
func NewPlan(p *pipeline.Pipeline, reserved ...string) (*Plan, error) {
	if p == nil {
		return nil, fmt.Errorf("compile: nil pipeline: %w", ErrInvalid)
	}
	if len(p.Nodes) == 0 {
		return nil, fmt.Errorf("compile: pipeline %q has no nodes: %w", p.Name, ErrInvalid)
	}
	if p.RuntimeType == pipeline.RuntimeAirflow {
		return nil, fmt.Errorf("compile: pipeline %q is for runtime %s, not Kubeflow Pipelines: %w", p.Name, p.RuntimeType, ErrInvalid)
	}
	params := make(map[string]pipeline.Parameter, len(p.Parameters))
	for _, prm := range p.Parameters {
		if _, dup := params[prm.Name]; dup {
			return nil, fmt.Errorf("compile: duplicate pipeline parameter %q: %w", prm.Name, ErrInvalid)
		}
		switch prm.Type {
		case pipeline.ParamString, pipeline.ParamInteger, pipeline.ParamFloat, pipeline.ParamBool:
		default:
			return nil, fmt.Errorf("compile: pipeline parameter %q has unknown type %q: %w", prm.Name, prm.Type, ErrInvalid)
		}
		if !validParamName(prm.Name) {
			return nil, fmt.Errorf("compile: pipeline parameter name %q is not an identifier: %w", prm.Name, ErrInvalid)
		}
		params[prm.Name] = prm
	}

	pl := &Plan{Pipeline: p, byID: make(map[string]*Step, len(p.Nodes))}
	names := NewNamer(reserved...)
	pl.Name = DNSLabel(p.Name, maxNameLen, "pipeline")
	for _, n := range p.Nodes {
		if n.ID == "" {
			return nil, fmt.Errorf("compile: node %q has no id: %w", n.Label, ErrInvalid)
		}
		if _, dup := pl.byID[n.ID]; dup {
			return nil, fmt.Errorf("compile: duplicate node id %q: %w", n.ID, ErrInvalid)
		}
		if n.Kind == "" {
			return nil, fmt.Errorf("compile: node %q (%s): op %q is not a generic node: %w", n.Label, n.ID, n.Op, ErrInvalid)
		}
		if n.Filename == "" {
			return nil, fmt.Errorf("compile: node %q (%s) has no filename: %w", n.Label, n.ID, ErrInvalid)
		}
		if n.RuntimeImage == "" {
			return nil, fmt.Errorf("compile: node %q (%s) has no runtime image: %w", n.Label, n.ID, ErrInvalid)
		}
		label := n.Label
		if label == "" {
			label = path.Base(n.Filename)
		}
		s := &Step{Node: n, Name: names.Unique(DNSLabel(label, maxNameLen, "node"))}
		for _, name := range n.PipelineParameters {
			prm, ok := params[name]
			if !ok {
				return nil, fmt.Errorf("compile: node %q (%s) uses unknown pipeline parameter %q: %w", n.Label, n.ID, name, ErrInvalid)
			}
			s.Params = append(s.Params, prm)
		}
		pl.byID[n.ID] = s
		pl.Steps = append(pl.Steps, s)
	}
	for _, s := range pl.Steps {
		for _, pid := range s.Node.Parents {
			ps := pl.byID[pid]
			if ps == nil {
				return nil, fmt.Errorf("compile: node %q (%s) depends on unknown node %q: %w", s.Node.Label, s.Node.ID, pid, ErrInvalid)
			}
			s.Parents = append(s.Parents, ps)
		}
	}
	if err := pl.computeInputs(); err != nil {
		return nil, err
	}
	return pl, nil
}

// computeInputs orders the steps topologically (rejecting cycles) and gives every step the
// outputs of all its ancestors. Ancestor sets are bitsets indexed by node order, so a 1,000-node
// pipeline costs a few kilobytes and the resulting lists come out in node order for free.
func (pl *Plan) computeInputs() error {
	n := len(pl.Steps)
	index := make(map[*Step]int, n)
	for i, s := range pl.Steps {
		index[s] = i
	}
	words := (n + 63) / 64
	anc := make([][]uint64, n)
	state := make([]uint8, n) // 0 new, 1 visiting, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			s := pl.Steps[i]
			return fmt.Errorf("compile: node %q (%s) is part of a dependency cycle: %w", s.Node.Label, s.Node.ID, ErrInvalid)
		case 2:
			return nil
		}
		state[i] = 1
		set := make([]uint64, words)
		for _, ps := range pl.Steps[i].Parents {
			j := index[ps]
			if err := visit(j); err != nil {
				return err
			}
			set[j/64] |= 1 << (j % 64)
			for w, v := range anc[j] {
				set[w] |= v
			}
		}
		anc[i] = set
		state[i] = 2
		return nil
	}
	for i := range pl.Steps {
		if err := visit(i); err != nil {
			return err
		}
	}
	// Outputs get dense ids (first declaration wins) so that de-duplicating a step's inputs is a
	// slice lookup instead of a map per step.
	outID := map[string]int{}
	ids := make([][]int, n)
	for i, s := range pl.Steps {
		for _, out := range s.Node.Outputs {
			id, ok := outID[out]
			if !ok {
				id = len(outID)
				outID[out] = id
			}
			ids[i] = append(ids[i], id)
		}
	}
	mark := make([]int, len(outID)) // step index + 1 that last took the output
	for i, s := range pl.Steps {
		for w, v := range anc[i] {
			for v != 0 {
				b := bits.TrailingZeros64(v)
				v &^= 1 << b
				j := w*64 + b
				for k, out := range pl.Steps[j].Node.Outputs {
					if id := ids[j][k]; mark[id] != i+1 {
						mark[id] = i + 1
						s.Inputs = append(s.Inputs, out)
					}
				}
			}
		}
	}
	return nil
}

// RunDirFor returns the run directory for the given run ID: Options.RunDir if set, else the storage
// layout <prefix>/runs/<run id> (storage.RunDir, mirrored here so the compilers stay free of the
// storage package; a test keeps the two identical).
func (o Options) RunDirFor(runID string) string {
	if o.RunDir != "" {
		return o.RunDir
	}
	var parts []string
	for _, e := range []string{o.Prefix, "runs", runID} {
		if e = strings.Trim(e, "/"); e != "" {
			parts = append(parts, e)
		}
	}
	return path.Join(parts...)
}

// ArchiveArgs returns the runner flags naming a step's dependency archive: --archive-key when
// packaging computed one, else Elyra's --cos-dependencies-archive "<stem>-<node id>.tar.gz".
func (o Options) ArchiveArgs(n *pipeline.Node) []string {
	if key := o.ArchiveKeys[n.ID]; key != "" {
		return []string{"--archive-key", key}
	}
	base := path.Base(n.Filename)
	stem := strings.TrimSuffix(base, path.Ext(base))
	return []string{"--cos-dependencies-archive", stem + "-" + n.ID + ".tar.gz"}
}

// RunnerArgs is the kfbridge-step command line (without the program name) for one step.
// runID is the literal run ID or the target's placeholder for it; paramRef spells the run-time
// value of a pipeline parameter in the target's template language.
func (pl *Plan) RunnerArgs(s *Step, o Options, runID string, paramRef func(name string) string) []string {
	n := s.Node
	label := n.Label
	if label == "" {
		label = path.Base(n.Filename)
	}
	args := make([]string, 0, 32)
	args = append(args,
		"--pipeline-name", pl.Pipeline.Name,
		"--run-id", runID,
		"--step-id", n.ID,
		"--step-label", label,
		"--cos-endpoint", o.Endpoint,
		"--cos-bucket", o.Bucket,
	)
	if o.Prefix != "" {
		args = append(args, "--cos-prefix", o.Prefix)
	}
	args = append(args, "--cos-directory", o.RunDirFor(runID))
	args = append(args, o.ArchiveArgs(n)...)
	args = append(args, "--file", n.Filename)
	if len(s.Inputs) > 0 {
		args = append(args, "--inputs", strings.Join(s.Inputs, ";"))
	}
	if len(n.Outputs) > 0 {
		args = append(args, "--outputs", strings.Join(n.Outputs, ";"))
	}
	if len(s.Params) > 0 {
		kv := make([]string, len(s.Params))
		for i, prm := range s.Params {
			kv[i] = prm.Name + "=" + paramRef(prm.Name)
		}
		args = append(args, "--pipeline-parameters", strings.Join(kv, ";"), "--parameter-pass-method", "env")
	}
	if o.PushURL != "" {
		args = append(args, "--push-url", o.PushURL)
	}
	if o.Region != "" {
		args = append(args, "--region", o.Region)
	}
	return args
}

// EnvVar is one container environment variable: a literal Value, or a key of a Secret.
type EnvVar struct {
	Name  string
	Value string
	// Secret and Key are set for a secretKeyRef variable.
	Secret string
	Key    string
}

// Env lists a step's environment: the node's env vars, its Kubernetes secrets, then what the
// runner needs (object-store credentials by Secret reference, the push token by Secret
// reference). No credential value is ever part of it.
func (pl *Plan) Env(s *Step, o Options) []EnvVar {
	n := s.Node
	env := make([]EnvVar, 0, len(n.Env)+len(n.Secrets)+3)
	for _, e := range n.Env {
		env = append(env, EnvVar{Name: e.Name, Value: e.Value})
	}
	for _, se := range n.Secrets {
		env = append(env, EnvVar{Name: se.Name, Secret: se.Secret, Key: se.Key})
	}
	if o.Credentials.Mode == CredentialsSecret {
		env = append(env,
			EnvVar{Name: EnvAccessKey, Secret: o.Credentials.SecretName, Key: EnvAccessKey},
			EnvVar{Name: EnvSecretKey, Secret: o.Credentials.SecretName, Key: EnvSecretKey},
		)
	}
	if o.PushURL != "" {
		env = append(env, EnvVar{Name: EnvPushToken, Secret: o.PushToken.Name, Key: o.PushToken.Key})
	}
	return env
}

// PodLabels are the labels of a step's pod besides the target's own: the user's pod labels,
// then kfbridge's (which win on conflict, since log streaming selects pods by them).
func (pl *Plan) PodLabels(s *Step, o Options) map[string]string {
	m := make(map[string]string, len(s.Node.PodLabels)+3)
	for _, kv := range s.Node.PodLabels {
		m[kv.Key] = kv.Value
	}
	m[LabelPipelineName] = LabelValue(pl.Pipeline.Name)
	m[LabelNodeName] = LabelValue(stepLabel(s))
	if o.RunID != "" {
		m[LabelRunID] = LabelValue(o.RunID)
	}
	return m
}

// PodAnnotations are the user's pod annotations plus the node id and the node's comment.
func (pl *Plan) PodAnnotations(s *Step) map[string]string {
	m := make(map[string]string, len(s.Node.Annotations)+2)
	for _, kv := range s.Node.Annotations {
		m[kv.Key] = kv.Value
	}
	m[AnnotationNodeID] = s.Node.ID
	if s.Node.Comment != "" {
		m[AnnotationNodeDoc] = s.Node.Comment
	}
	return m
}

func stepLabel(s *Step) string {
	if s.Node.Label != "" {
		return s.Node.Label
	}
	return path.Base(s.Node.Filename)
}

// DisplayName is the name a step shows in the KFP UI: the node's label, else its file name.
func (s *Step) DisplayName() string { return stepLabel(s) }

// Quantity formats a CPU count or GPU count as a Kubernetes quantity ("0.5", "2").
func Quantity(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// GB formats a size in gigabytes the way Elyra does ("4G", "0.5G").
func GB(v float64) string { return Quantity(v) + "G" }

// GPUResource is the Kubernetes resource name of a node's GPUs.
func GPUResource(r pipeline.Resources) string {
	if r.GPUVendor != "" {
		return r.GPUVendor
	}
	return "nvidia.com/gpu"
}

// ParamString renders a parameter value as the text a run receives: strings as is, numbers
// without exponent (integers without a fraction), booleans as true/false. ok is false when v is
// nil.
func ParamString(typ string, v any) (s string, ok bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if typ == pipeline.ParamInteger {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	default:
		return fmt.Sprint(x), true
	}
}

func validParamName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
