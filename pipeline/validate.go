package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Load parses and validates a pipeline: the issues of both, parse issues first. When Parse cannot
// build a model, Validate is skipped and the pipeline is nil.
func Load(data []byte, root string) (*Pipeline, []Issue) {
	p, issues := Parse(data)
	if p == nil {
		return nil, issues
	}
	return p, append(issues, Validate(p, root)...)
}

// Validate checks a parsed pipeline against the workspace root directory: runtime, node types,
// properties, file paths (missing file, glob without match, path escaping root through "..", an
// absolute path or a symlink), file types, labels, cycles, singletons, parameters and resources.
// Node issues' Data names nodeID, nodeName, propertyName and value. It never panics.
func Validate(p *Pipeline, root string) (issues []Issue) {
	defer func() {
		if r := recover(); r != nil {
			issues = append(issues, newIssue(SeverityError, TypeInvalidPipeline,
				fmt.Sprintf("internal error while validating the pipeline: %v", r), nil))
		}
	}()
	if p == nil {
		return []Issue{newIssue(SeverityError, TypeInvalidPipeline, "no pipeline to validate", nil)}
	}
	v := &validator{p: p, root: root}
	v.runtime()
	v.parameters()
	params := map[string]bool{}
	for _, prm := range p.Parameters {
		params[prm.Name] = true
	}
	for _, n := range p.Nodes {
		v.node(n, params)
	}
	v.labels()
	v.outputs()
	v.graph()
	return v.issues
}

type validator struct {
	p      *Pipeline
	root   string
	issues []Issue
	// lists shares directory listings between nodes: pipelines often have many nodes in one
	// directory with the same globs.
	lists listCache
}

func (v *validator) add(sev int, typ, msg string, data map[string]any) {
	v.issues = append(v.issues, newIssue(sev, typ, msg, data))
}

// remote reports whether the pipeline will run in containers (so images and resources matter).
func (v *validator) remote() bool {
	return v.p.RuntimeType == RuntimeKFP || (v.p.RuntimeConfig != "" && !strings.EqualFold(v.p.RuntimeConfig, "local"))
}

func (v *validator) runtime() {
	switch v.p.RuntimeType {
	case "", RuntimeKFP:
	case RuntimeAirflow:
		v.add(SeverityError, TypeInvalidRuntime, "Apache Airflow pipelines are not supported (yet): kfbridge runs generic and Kubeflow Pipelines pipelines; change the pipeline's runtime to Generic or Kubeflow Pipelines",
			map[string]any{DataRuntime: v.p.RuntimeType})
	default:
		v.add(SeverityError, TypeInvalidRuntime, fmt.Sprintf("unknown runtime %q: expected %s or a generic pipeline", v.p.RuntimeType, RuntimeKFP),
			map[string]any{DataRuntime: v.p.RuntimeType})
	}
}

// pythonKeywords are the reserved words of Python 3; Elyra rejects them as parameter names
// because the KFP DSL turns parameters into Python function arguments.
var pythonKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "async": true,
	"await": true, "break": true, "class": true, "continue": true, "def": true, "del": true, "elif": true,
	"else": true, "except": true, "finally": true, "for": true, "from": true, "global": true, "if": true,
	"import": true, "in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true,
	"pass": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (v *validator) parameters() {
	seen := map[string]bool{}
	for i, prm := range v.p.Parameters {
		data := map[string]any{DataParameterName: prm.Name, "index": i}
		switch {
		case prm.Name == "":
			v.add(SeverityError, TypeInvalidPipelineParameter, "a pipeline parameter has no name", data)
			continue
		case !identRE.MatchString(prm.Name):
			v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("parameter name %q is not a valid Python identifier (letters, digits and _, not starting with a digit)", prm.Name), data)
		case pythonKeywords[prm.Name]:
			v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("parameter name %q is a Python keyword", prm.Name), data)
		}
		if seen[prm.Name] {
			v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("parameter %q is defined more than once", prm.Name), data)
		}
		seen[prm.Name] = true
		switch prm.Type {
		case ParamString, ParamInteger, ParamFloat, ParamBool:
		default:
			d := clone(data)
			d[DataValue] = prm.Type
			v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("parameter %q has unknown type %q: expected String, Integer, Float or Bool", prm.Name, prm.Type), d)
			continue
		}
		for _, val := range []struct {
			what string
			x    any
		}{{"default value", prm.Default}, {"value", prm.Value}} {
			if val.x != nil && !typeMatches(prm.Type, val.x) {
				d := clone(data)
				d[DataValue] = val.x
				v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("the %s of parameter %q is not a valid %s", val.what, prm.Name, prm.Type), d)
			}
		}
		if prm.Required && isEmptyValue(prm.Effective()) {
			v.add(SeverityError, TypeInvalidPipelineParameter, fmt.Sprintf("parameter %q is required but has no value", prm.Name), data)
		}
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		out[k] = x
	}
	return out
}

func isEmptyValue(x any) bool {
	if x == nil {
		return true
	}
	s, ok := x.(string)
	return ok && s == ""
}

// typeMatches accepts JSON values and the strings Elyra's editor sometimes stores for numbers and
// booleans.
func typeMatches(typ string, x any) bool {
	switch typ {
	case ParamString:
		_, ok := x.(string)
		return ok
	case ParamInteger:
		switch n := x.(type) {
		case float64:
			return n == float64(int64(n))
		case string:
			_, ok := intValue(n)
			return ok
		}
	case ParamFloat:
		switch n := x.(type) {
		case float64:
			return true
		case string:
			var f float64
			_, err := fmt.Sscan(n, &f)
			return err == nil
		}
	case ParamBool:
		switch b := x.(type) {
		case bool:
			return true
		case string:
			return optBool(b) != nil
		}
	}
	return false
}

// Kubernetes name rules (DNS-1123), used for secrets, PVCs and label/annotation keys.
var (
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	qualifiedName    = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelValue       = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	secretKey        = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	envName          = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	// imageRE is a lenient OCI reference: [registry[:port]/]path[:tag][@digest].
	imageRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,})?$`)
)

func (v *validator) node(n *Node, params map[string]bool) {
	if n.Kind == "" {
		v.add(SeverityError, TypeInvalidNodeType, fmt.Sprintf("node uses component %q: custom components are not supported (yet); only generic notebook, Python and R nodes can run", n.Op),
			nodeData(n, "", n.Op))
		return
	}
	v.file(n)
	v.dependencies(n)
	v.image(n)
	for _, o := range n.Outputs {
		if err := checkRel(o); err != nil {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("output %q: %v", o, err), nodeData(n, "outputs", o))
		} else if hasMeta(o) {
			if _, err := path.Match(o, ""); err != nil {
				v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("output %q is not a valid glob pattern", o), nodeData(n, "outputs", o))
			}
		}
	}
	for _, e := range n.Env {
		if !envName.MatchString(e.Name) {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("environment variable name %q is not valid", e.Name), nodeData(n, "env_vars", e.Name))
		}
	}
	for _, s := range n.Secrets {
		switch {
		case !envName.MatchString(s.Name):
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("environment variable name %q is not valid", s.Name), nodeData(n, "kubernetes_secrets", s.Name))
		case s.Secret == "" || len(s.Secret) > 253 || !dns1123Subdomain.MatchString(s.Secret):
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("secret name %q is not a valid Kubernetes resource name", s.Secret), nodeData(n, "kubernetes_secrets", s.Secret))
		case !secretKey.MatchString(s.Key) || len(s.Key) > 253:
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("secret key %q is not a valid key", s.Key), nodeData(n, "kubernetes_secrets", s.Key))
		}
	}
	for _, vol := range n.Volumes {
		switch {
		case !strings.HasPrefix(vol.Path, "/"):
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("mount path %q must be absolute", vol.Path), nodeData(n, "mounted_volumes", vol.Path))
		case vol.PVCName == "" || len(vol.PVCName) > 253 || !dns1123Subdomain.MatchString(vol.PVCName):
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("PVC name %q is not a valid Kubernetes resource name", vol.PVCName), nodeData(n, "mounted_volumes", vol.PVCName))
		case vol.SubPath != "" && (strings.HasPrefix(vol.SubPath, "/") || checkRel(vol.SubPath) != nil):
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("sub path %q must be relative and must not contain \"..\"", vol.SubPath), nodeData(n, "mounted_volumes", vol.SubPath))
		}
	}
	for _, t := range n.Tolerations {
		switch {
		case t.Operator != "Equal" && t.Operator != "Exists":
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("toleration operator %q must be Equal or Exists", t.Operator), nodeData(n, "kubernetes_tolerations", t.Operator))
		case t.Operator == "Exists" && t.Value != "":
			v.add(SeverityError, TypeInvalidNodeProperty, "a toleration with operator Exists must not have a value", nodeData(n, "kubernetes_tolerations", t.Value))
		case t.Key == "" && t.Operator == "Equal":
			v.add(SeverityError, TypeInvalidNodeProperty, "a toleration without a key must use operator Exists", nodeData(n, "kubernetes_tolerations", t.Key))
		case t.Effect != "" && t.Effect != "NoSchedule" && t.Effect != "PreferNoSchedule" && t.Effect != "NoExecute":
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("toleration effect %q must be NoSchedule, PreferNoSchedule or NoExecute", t.Effect), nodeData(n, "kubernetes_tolerations", t.Effect))
		}
	}
	v.keyValues(n, "kubernetes_pod_annotations", n.Annotations, false)
	v.keyValues(n, "kubernetes_pod_labels", n.PodLabels, true)
	if n.SharedMemSizeGB < 0 {
		v.add(SeverityError, TypeInvalidNodeProperty, "shared memory size must not be negative", nodeData(n, "kubernetes_shared_mem_size", n.SharedMemSizeGB))
	}
	v.resources(n)
	for _, name := range n.PipelineParameters {
		if !params[name] {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("node uses pipeline parameter %q, which the pipeline does not define", name), nodeData(n, "pipeline_parameters", name))
		}
	}
}

func (v *validator) file(n *Node) {
	if n.Filename == "" {
		v.add(SeverityError, TypeInvalidNodeProperty, "required property filename is missing", nodeData(n, "filename", nil))
		return
	}
	if err := checkRel(n.Filename); err != nil {
		v.add(SeverityError, TypeInvalidFilePath, fmt.Sprintf("invalid file path %q: %v", n.Filename, err), nodeData(n, "filename", n.Filename))
		return
	}
	k := kindOfFile(n.Filename)
	if k == "" {
		v.add(SeverityError, TypeInvalidFileType, fmt.Sprintf("file %q is not a notebook (.ipynb), Python script (.py) or R script (.r)", n.Filename), nodeData(n, "filename", n.Filename))
	} else if want := opKind(n.Op); want != "" && want != k {
		// Seed-era files used the notebook op for every file; the file's extension decides.
		v.add(SeverityWarning, TypeInvalidFileType, fmt.Sprintf("node type %s does not match file %q; it runs as a %s file", n.Op, n.Filename, k), nodeData(n, "filename", n.Filename))
	}
	if _, _, err := nodeFile(v.root, n); err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, ErrOutsideRoot):
			msg = fmt.Sprintf("file %q resolves through a symlink to a location outside the workspace", n.Filename)
		case errors.Is(err, fs.ErrNotExist):
			msg = fmt.Sprintf("file %q does not exist in the workspace", n.Filename)
		}
		v.add(SeverityError, TypeInvalidFilePath, msg, nodeData(n, "filename", n.Filename))
	}
}

func opKind(op string) string {
	switch op {
	case OpNotebook:
		return KindNotebook
	case OpPython:
		return KindPython
	case OpR:
		return KindR
	}
	return ""
}

func (v *validator) dependencies(n *Node) {
	if len(n.Dependencies) == 0 || checkRel(n.Filename) != nil {
		return
	}
	dir := path.Dir(path.Clean(n.Filename))
	if abs, err := Confine(v.root, dir); err != nil {
		return // the filename issue already says the file's directory is unusable
	} else if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return // likewise: the file does not exist, so neither does its directory
	}
	if v.lists == nil {
		v.lists = listCache{}
	}
	_, errs := expandDeps(v.root, dir, n.Dependencies, n.IncludeSubdirectories, v.lists)
	for _, e := range errs {
		var msg string
		switch {
		case errors.Is(e.Err, ErrNoMatch):
			msg = fmt.Sprintf("dependency %q matches no file in %q", e.Dependency, dir)
		case errors.Is(e.Err, ErrBadGlob):
			msg = fmt.Sprintf("dependency %q is not a valid glob pattern", e.Dependency)
		default:
			msg = fmt.Sprintf("invalid dependency %q: %v", e.Dependency, e.Err)
		}
		v.add(SeverityError, TypeInvalidFilePath, msg, nodeData(n, "dependencies", e.Dependency))
	}
}

func (v *validator) image(n *Node) {
	if n.RuntimeImage == "" {
		if v.remote() {
			v.add(SeverityError, TypeInvalidNodeProperty, "required property runtime_image is missing (set it on the node or in the pipeline defaults)", nodeData(n, "runtime_image", nil))
		} else {
			v.add(SeverityWarning, TypeInvalidNodeProperty, "runtime_image is not set: the node can run locally but not on Kubeflow Pipelines", nodeData(n, "runtime_image", nil))
		}
		return
	}
	if len(n.RuntimeImage) > 4096 || !imageRE.MatchString(n.RuntimeImage) {
		v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("runtime image %q is not a valid container image reference", n.RuntimeImage), nodeData(n, "runtime_image", n.RuntimeImage))
	}
}

func (v *validator) keyValues(n *Node, prop string, kvs []KeyValue, isLabel bool) {
	seen := map[string]bool{}
	for _, kv := range kvs {
		if !validQualifiedKey(kv.Key) {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("%q is not a valid Kubernetes key", kv.Key), nodeData(n, prop, kv.Key))
			continue
		}
		if seen[kv.Key] {
			v.add(SeverityWarning, TypeInvalidNodeProperty, fmt.Sprintf("key %q appears more than once; the last value wins", kv.Key), nodeData(n, prop, kv.Key))
		}
		seen[kv.Key] = true
		if isLabel && (len(kv.Value) > 63 || !labelValue.MatchString(kv.Value)) {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("label value %q is not valid (at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)", kv.Value), nodeData(n, prop, kv.Value))
		}
	}
}

// validQualifiedKey checks Kubernetes' [prefix/]name key syntax.
func validQualifiedKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	} else if prefix == "" || len(prefix) > 253 || !dns1123Subdomain.MatchString(prefix) {
		return false
	}
	return name != "" && len(name) <= 63 && qualifiedName.MatchString(name)
}

func (v *validator) resources(n *Node) {
	r := n.Resources
	check := func(prop string, x float64) bool {
		if x < 0 {
			v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("%s must not be negative", prop), nodeData(n, prop, x))
			return false
		}
		return true
	}
	cpuOK := check("cpu", r.CPU)
	cpuLimOK := check("cpu_limit", r.CPULimit)
	memOK := check("memory", r.MemoryGB)
	memLimOK := check("memory_limit", r.MemoryLimitGB)
	check("gpu", float64(r.GPU))
	if cpuOK && cpuLimOK && r.CPULimit > 0 && r.CPU > 0 && r.CPULimit < r.CPU {
		v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("cpu_limit (%g) must be at least the cpu request (%g)", r.CPULimit, r.CPU), nodeData(n, "cpu_limit", r.CPULimit))
	}
	if memOK && memLimOK && r.MemoryLimitGB > 0 && r.MemoryGB > 0 && r.MemoryLimitGB < r.MemoryGB {
		v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("memory_limit (%gG) must be at least the memory request (%gG)", r.MemoryLimitGB, r.MemoryGB), nodeData(n, "memory_limit", r.MemoryLimitGB))
	}
	if r.GPUVendor != "" && !validQualifiedKey(r.GPUVendor) {
		v.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("gpu_vendor %q is not a valid Kubernetes resource name", r.GPUVendor), nodeData(n, "gpu_vendor", r.GPUVendor))
	}
}

// labels checks node labels: they name steps in logs and KFP task names, so they must be
// non-empty, reasonably short and distinct.
func (v *validator) labels() {
	byLabel := map[string][]*Node{}
	var order []string
	for _, n := range v.p.Nodes {
		l := strings.TrimSpace(n.Label)
		if len(l) > 63 {
			v.add(SeverityWarning, TypeInvalidNodeLabel, fmt.Sprintf("label is %d characters long; Kubeflow Pipelines task names are cut to 63", len(l)), nodeData(n, "label", n.Label))
		}
		key := strings.ToLower(l)
		if _, ok := byLabel[key]; !ok {
			order = append(order, key)
		}
		byLabel[key] = append(byLabel[key], n)
	}
	for _, key := range order {
		ns := byLabel[key]
		if len(ns) < 2 {
			continue
		}
		ids := make([]string, len(ns))
		for i, n := range ns {
			ids[i] = n.ID
		}
		for _, n := range ns[1:] {
			d := nodeData(n, "label", n.Label)
			d[DataNodeIDList] = ids
			v.add(SeverityWarning, TypeInvalidNodeLabel, fmt.Sprintf("label %q is used by %d nodes; steps are told apart by a _N suffix", n.Label, len(ns)), d)
		}
	}
}

// outputs warns when two nodes declare the same output: both upload it to the same key of the
// run directory, so which one a descendant receives depends on which finished last.
func (v *validator) outputs() {
	owner := map[string]*Node{}
	for _, n := range v.p.Nodes {
		seen := map[string]bool{}
		for _, o := range n.Outputs {
			key := path.Clean(o)
			if seen[key] {
				continue
			}
			seen[key] = true
			first, ok := owner[key]
			if !ok {
				owner[key] = n
				continue
			}
			d := nodeData(n, "outputs", o)
			d[DataNodeIDList] = []string{first.ID, n.ID}
			v.add(SeverityWarning, TypeInvalidNodeProperty, fmt.Sprintf("output %q is also produced by node %q; descendants get whichever upload came last", o, first.Label), d)
		}
	}
}

// graph reports cycles (errors) and, in a multi-node pipeline, nodes with no link at all.
func (v *validator) graph() {
	for _, cyc := range allCycles(v.p) {
		names := make([]string, len(cyc))
		for i, id := range cyc {
			names[i] = v.p.Node(id).Label
		}
		first := v.p.Node(cyc[0])
		d := nodeData(first, "", nil)
		d[DataNodeIDList] = slices.Clone(cyc[:len(cyc)-1])
		v.add(SeverityError, TypeCircularReference, fmt.Sprintf("the pipeline has a cycle: %s", strings.Join(names, " -> ")), d)
	}
	if len(v.p.Nodes) < 2 {
		return
	}
	linked := map[string]bool{}
	for _, n := range v.p.Nodes {
		for _, par := range n.Parents {
			if v.p.Node(par) != nil {
				linked[par] = true
				linked[n.ID] = true
			}
		}
	}
	for _, n := range v.p.Nodes {
		if !linked[n.ID] {
			v.add(SeverityWarning, TypeSingletonReference, "node is not connected to any other node of the pipeline", nodeData(n, "", nil))
		}
	}
}
