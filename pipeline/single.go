package pipeline

import (
	"fmt"
	"path"
	"strings"
)

// FileOptions are the settings of a single-file submission (a notebook or script run as a
// one-node pipeline).
type FileOptions struct {
	// Name is the pipeline/run name; default the file's base name without extension.
	Name string
	// RuntimeConfig names the runtime configuration to submit to; empty means local.
	RuntimeConfig string
	// RuntimeType is RuntimeKFP or empty (generic).
	RuntimeType  string
	RuntimeImage string
	// Dependencies are files or globs relative to the file's directory.
	Dependencies          []string
	IncludeSubdirectories bool
	Outputs               []string
	Env                   []EnvVar
	Resources             Resources
	// CosObjectPrefix is the static object-store prefix, as in pipeline defaults.
	CosObjectPrefix string
}

// FromFile builds a one-node pipeline for a single-file submission of relPath (workspace-relative,
// slash-separated; .ipynb, .py or .r). The node's ID is "node-1" and its label the file's base
// name. The path is checked lexically only; Validate checks it against a workspace.
func FromFile(relPath string, opts FileOptions) (*Pipeline, error) {
	if err := checkRel(relPath); err != nil {
		return nil, fmt.Errorf("single-file pipeline %q: %w", relPath, err)
	}
	clean := path.Clean(strings.TrimPrefix(relPath, "./"))
	kind := kindOfFile(clean)
	op := ""
	switch kind {
	case KindNotebook:
		op = OpNotebook
	case KindPython:
		op = OpPython
	case KindR:
		op = OpR
	default:
		return nil, fmt.Errorf("single-file pipeline %q: only .ipynb, .py and .r files can run", relPath)
	}
	base := path.Base(clean)
	name := opts.Name
	if name == "" {
		name = strings.TrimSuffix(base, path.Ext(base))
	}
	rt := normalizeRuntime(opts.RuntimeType)
	n := &Node{
		ID:                    "node-1",
		Label:                 base,
		Op:                    op,
		Kind:                  kind,
		Filename:              clean,
		RuntimeImage:          strings.TrimSpace(opts.RuntimeImage),
		Dependencies:          stringList(toAny(opts.Dependencies)),
		IncludeSubdirectories: opts.IncludeSubdirectories,
		Outputs:               stringList(toAny(opts.Outputs)),
		Env:                   append([]EnvVar(nil), opts.Env...),
		Resources:             opts.Resources,
	}
	if n.Resources.GPU != 0 && n.Resources.GPUVendor == "" {
		n.Resources.GPUVendor = "nvidia.com/gpu"
	}
	return &Pipeline{
		Name:            name,
		Source:          base,
		RuntimeConfig:   opts.RuntimeConfig,
		RuntimeType:     rt,
		Version:         CurrentVersion,
		CosObjectPrefix: strings.Trim(opts.CosObjectPrefix, "/"),
		Nodes:           []*Node{n},
	}, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// RebaseFilenames makes node file names workspace-relative for a pipeline file read from disk.
// In a saved .pipeline file, filename is relative to the file's own directory; Elyra's frontend
// rewrites it before submitting, and a CLI reading the file must do the same. pipelineDir is the
// pipeline file's directory relative to the workspace root ("." at the top). Absolute names are
// left alone; a name that climbs above the workspace keeps its leading "..", so Validate reports
// it as invalidFilePath.
func RebaseFilenames(p *Pipeline, pipelineDir string) {
	if p == nil {
		return
	}
	dir := path.Clean(strings.ReplaceAll(pipelineDir, `\`, "/"))
	if dir == "." || dir == "" {
		return
	}
	for _, n := range p.Nodes {
		if n.Filename == "" || strings.HasPrefix(n.Filename, "/") || n.Kind == "" {
			continue
		}
		n.Filename = path.Join(dir, n.Filename)
	}
}
