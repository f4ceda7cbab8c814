package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
)

// Supported file-format versions (pipelines[i].app_data.version). 3 is the seed era (Elyra 1.2 -
// 2.x, flat node app_data, "K=V" env strings); 8 is current Elyra (3.12 - 4.x). Versions are read
// leniently: every shape any of them used is accepted in any of them, because hand-edited and
// half-migrated files exist in the wild.
const (
	MinVersion     = 3
	CurrentVersion = 8
)

// pipeline-flow node types.
const (
	nodeExecution = "execution_node"
	nodeSuper     = "super_node"
	nodeBinding   = "binding"
	nodeModel     = "model_node"
)

// maxSupernodeDepth bounds supernode nesting so a crafted file cannot recurse without end.
const maxSupernodeDepth = 32

// Parse reads a pipeline file (any app_data.version 3..8, migrated in memory) into the model,
// defaults applied, supernodes flattened. Structural problems come back as issues (invalidJSON,
// invalidPipeline, ...); p is nil only when no model can be built at all. It never panics.
func Parse(data []byte) (p *Pipeline, issues []Issue) {
	defer func() {
		// Parse is called on untrusted bytes from HTTP bodies; a bug must become an issue, never
		// take the server down.
		if r := recover(); r != nil {
			p = nil
			issues = append(issues, newIssue(SeverityError, TypeInvalidPipeline,
				fmt.Sprintf("internal error while parsing the pipeline: %v", r), nil))
		}
	}()
	ps := &parser{}
	p = ps.parse(data)
	return p, ps.issues
}

type parser struct {
	issues []Issue
	// flows maps pipeline-flow pipeline ids to their objects (primary and supernode sub-flows).
	flows map[string]map[string]any
	// version is the file-format version of the primary pipeline.
	version int
	// nodes collects generic and custom nodes in file order while flattening.
	nodes []*Node
	// raw links per node, resolved to parent IDs after every node is known.
	links map[*Node][]rawLink
	// superOut maps "<supernode id>" -> set of inner node IDs (for links to supernode ports).
	supers map[string]*superInfo
	// comments collects comments per node id.
	comments map[string][]string
	// defaults are the pipeline_defaults object.
	defaults map[string]any
}

type rawLink struct {
	nodeRef string
	portRef string
	// super is the supernode this node sits in (for links to binding nodes), or nil.
	super *superInfo
}

type superInfo struct {
	id     string
	parent *superInfo
	// inner are the IDs of execution nodes flattened from this supernode (transitively).
	inner map[string]bool
	// bindingParents maps a binding node id inside the sub-flow to the links entering the
	// supernode on the port bound to it.
	bindingParents map[string][]rawLink
	// bindings are the ids of binding nodes in the sub-flow.
	bindings map[string]bool
}

func (ps *parser) add(sev int, typ, msg string, data map[string]any) {
	ps.issues = append(ps.issues, newIssue(sev, typ, msg, data))
}

func (ps *parser) parse(data []byte) *Pipeline {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		ps.add(SeverityError, TypeInvalidJSON, fmt.Sprintf("the pipeline file is not valid JSON: %v", err), nil)
		return nil
	}
	if dec.More() {
		ps.add(SeverityError, TypeInvalidJSON, "the pipeline file has content after the JSON document", nil)
		return nil
	}
	top, ok := doc.(map[string]any)
	if !ok {
		ps.add(SeverityError, TypeInvalidPipeline, "the pipeline file must be a JSON object", nil)
		return nil
	}
	switch v := top["version"].(type) {
	case nil:
		ps.add(SeverityWarning, TypeInvalidPipeline, "the pipeline-flow schema version (top-level \"version\") is missing; assuming \"3.0\"", nil)
	case string:
		if f, err := strconv.ParseFloat(v, 64); err != nil || f != 3 {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("unsupported pipeline-flow schema version %q: only \"3.0\" is supported", v), map[string]any{DataValue: v})
		}
	case float64:
		if v != 3 {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("unsupported pipeline-flow schema version %v: only \"3.0\" is supported", v), map[string]any{DataValue: v})
		}
	default:
		ps.add(SeverityError, TypeInvalidPipeline, "the pipeline-flow schema version (top-level \"version\") must be the string \"3.0\"", nil)
	}
	if dt, ok := top["doc_type"].(string); ok && dt != "pipeline" {
		ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("doc_type is %q, expected \"pipeline\"", dt), map[string]any{DataValue: dt})
	}

	flows, _ := top["pipelines"].([]any)
	if len(flows) == 0 {
		if _, present := top["pipelines"]; !present {
			ps.add(SeverityError, TypeInvalidPipeline, "the pipeline file has no \"pipelines\" field", nil)
		} else {
			ps.add(SeverityError, TypeInvalidPipeline, "the pipeline file's \"pipelines\" field is empty or not a list", nil)
		}
		return nil
	}
	ps.flows = map[string]map[string]any{}
	var first map[string]any
	for _, f := range flows {
		fo, ok := f.(map[string]any)
		if !ok {
			continue
		}
		if first == nil {
			first = fo
		}
		if id := str(fo["id"]); id != "" {
			if _, dup := ps.flows[id]; !dup {
				ps.flows[id] = fo
			}
		}
	}
	if first == nil {
		ps.add(SeverityError, TypeInvalidPipeline, "the pipeline file's \"pipelines\" entries are not objects", nil)
		return nil
	}
	primary := first
	switch pid := top["primary_pipeline"].(type) {
	case string:
		if fo, ok := ps.flows[pid]; ok {
			primary = fo
		} else {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("primary_pipeline %q does not name an entry of \"pipelines\"", pid), map[string]any{DataValue: pid})
			return nil
		}
	case nil:
		ps.add(SeverityWarning, TypeInvalidPipeline, "the pipeline file has no \"primary_pipeline\"; using the first entry of \"pipelines\"", nil)
	default:
		ps.add(SeverityError, TypeInvalidPipeline, "primary_pipeline must be a string", nil)
		return nil
	}

	ad := obj(primary["app_data"])
	if _, ok := intValue(ad["version"]); !ok {
		// Elyra's editor keeps the pipeline-level app_data on pipelines[0], which is normally
		// the primary pipeline; a file where they differ is read the editor's way.
		if fad := obj(first["app_data"]); fad != nil {
			if _, ok := intValue(fad["version"]); ok {
				ad = fad
			}
		}
	}
	if ad == nil {
		ps.add(SeverityError, TypeInvalidPipeline, "the primary pipeline has no app_data", nil)
		return nil
	}
	ver, ok := intValue(ad["version"])
	switch {
	case !ok:
		ps.add(SeverityError, TypeInvalidPipeline, "the primary pipeline's app_data.version is missing or not an integer; open and save the file in Elyra to fix it", nil)
		return nil
	case ver < MinVersion:
		ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("pipeline file format version %d is too old: versions %d to %d are supported; open and save the file in Elyra 1.2 or later to migrate it", ver, MinVersion, CurrentVersion), map[string]any{DataValue: ver})
		return nil
	case ver > CurrentVersion:
		ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("pipeline file format version %d is newer than the newest supported version %d", ver, CurrentVersion), map[string]any{DataValue: ver})
		return nil
	}
	ps.version = ver

	p := &Pipeline{Version: ver, Nodes: []*Node{}}
	props := obj(ad["properties"])
	p.Name = firstString(str(ad["name"]), str(props["name"]), "untitled")
	p.Description = str(props["description"])
	p.Source = str(ad["source"])
	p.RuntimeConfig = firstString(str(ad["runtime_config"]), str(ad["runtime-config"]))
	p.RuntimeType = normalizeRuntime(firstString(str(ad["runtime_type"]), str(ad["runtime"])))

	ps.defaults = obj(props["pipeline_defaults"])
	if ps.defaults == nil {
		// Merging with empty defaults still de-duplicates the node's own lists.
		ps.defaults = map[string]any{}
	}
	// Older files keep cos_object_prefix next to the defaults; the defaults' value wins.
	p.CosObjectPrefix = strings.Trim(firstString(str(ps.defaults["cos_object_prefix"]), str(props["cos_object_prefix"])), "/")
	p.Parameters = ps.parameters(props["pipeline_parameters"])

	ps.links = map[*Node][]rawLink{}
	ps.supers = map[string]*superInfo{}
	ps.comments = map[string][]string{}
	ps.flatten(primary, nil, 0, map[string]bool{str(primary["id"]): true})
	p.Nodes = ps.nodes
	if len(p.Nodes) == 0 {
		ps.add(SeverityError, TypeInvalidPipeline, "the pipeline has no nodes", nil)
	}
	ps.resolveLinks(p)
	for _, n := range p.Nodes {
		n.Comment = strings.Join(ps.comments[n.ID], "\n\n")
	}
	return p
}

// normalizeRuntime maps every spelling of the runtime (v3-v5 "runtime": "kfp"/"airflow", v6+
// "runtime_type") to the model's constants; unknown values are kept for Validate to report.
func normalizeRuntime(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", RuntimeLocal, "GENERIC":
		return ""
	case "KFP", RuntimeKFP:
		return RuntimeKFP
	case "AIRFLOW", RuntimeAirflow:
		return RuntimeAirflow
	}
	return s
}

// flatten appends the execution nodes of one pipeline-flow pipeline, inlining supernodes where
// they stand. visiting guards against sub-flows that (directly or not) contain themselves.
func (ps *parser) flatten(flow map[string]any, super *superInfo, depth int, visiting map[string]bool) {
	for _, c := range arr(obj(obj(flow["app_data"])["ui_data"])["comments"]) {
		co := obj(c)
		content := strings.TrimSpace(str(co["content"]))
		if content == "" {
			continue
		}
		for _, ref := range arr(co["associated_id_refs"]) {
			if id := str(obj(ref)["node_ref"]); id != "" {
				ps.comments[id] = append(ps.comments[id], content)
			}
		}
	}
	nodes, ok := flow["nodes"].([]any)
	if !ok && flow["nodes"] != nil {
		ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("\"nodes\" of pipeline %q is not a list", str(flow["id"])), nil)
	}
	seen := map[string]bool{}
	for _, n := range ps.nodes {
		seen[n.ID] = true
	}
	for i, raw := range nodes {
		no, ok := raw.(map[string]any)
		if !ok {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("node %d of pipeline %q is not an object", i, str(flow["id"])), nil)
			continue
		}
		id := str(no["id"])
		typ := firstString(str(no["type"]), nodeExecution)
		switch typ {
		case nodeBinding:
			if super != nil {
				super.bindings[id] = true
			}
			continue
		case nodeModel:
			ps.add(SeverityError, TypeInvalidNodeType, "model nodes are not supported", map[string]any{DataNodeID: id, DataNodeName: nodeLabel(no)})
			continue
		case nodeSuper:
			ps.superNode(no, super, depth, visiting)
			continue
		case nodeExecution:
		default:
			ps.add(SeverityError, TypeInvalidNodeType, fmt.Sprintf("unknown node type %q", typ), map[string]any{DataNodeID: id, DataNodeName: nodeLabel(no), DataValue: typ})
			continue
		}
		if id == "" {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("node %d of pipeline %q has no id", i, str(flow["id"])), map[string]any{DataNodeName: nodeLabel(no)})
			continue
		}
		if seen[id] {
			ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("node id %q is used by more than one node", id), map[string]any{DataNodeID: id, DataNodeName: nodeLabel(no)})
			continue
		}
		seen[id] = true
		n := ps.node(no)
		ps.nodes = append(ps.nodes, n)
		for s := super; s != nil; s = s.parent {
			s.inner[id] = true
		}
		for _, l := range nodeLinks(no) {
			l.super = super
			ps.links[n] = append(ps.links[n], l)
		}
	}
}

func (ps *parser) superNode(no map[string]any, outer *superInfo, depth int, visiting map[string]bool) {
	id := str(no["id"])
	ref := str(obj(no["subflow_ref"])["pipeline_id_ref"])
	data := map[string]any{DataNodeID: id, DataNodeName: nodeLabel(no)}
	flow, ok := ps.flows[ref]
	switch {
	case ref == "" || !ok:
		ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("supernode refers to sub-flow %q, which is not in the file", ref), data)
		return
	case visiting[ref] || depth >= maxSupernodeDepth:
		ps.add(SeverityError, TypeCircularReference, fmt.Sprintf("supernode sub-flow %q contains itself", ref), data)
		return
	}
	s := &superInfo{id: id, parent: outer, inner: map[string]bool{}, bindingParents: map[string][]rawLink{}, bindings: map[string]bool{}}
	ps.supers[id] = s
	// Links entering the supernode arrive on ports bound to binding nodes of the sub-flow; the
	// inner nodes linked to such a binding node inherit them as parents.
	for _, in := range arr(no["inputs"]) {
		port := obj(in)
		bind := firstString(str(port["subflow_node_ref"]), str(port["id"]))
		for _, l := range arr(port["links"]) {
			lo := obj(l)
			s.bindingParents[bind] = append(s.bindingParents[bind], rawLink{nodeRef: str(lo["node_id_ref"]), portRef: str(lo["port_id_ref"]), super: outer})
		}
	}
	visiting[ref] = true
	ps.flatten(flow, s, depth+1, visiting)
	delete(visiting, ref)
}

func nodeLinks(no map[string]any) []rawLink {
	var out []rawLink
	for _, in := range arr(no["inputs"]) {
		for _, l := range arr(obj(in)["links"]) {
			lo := obj(l)
			if ref := str(lo["node_id_ref"]); ref != "" {
				out = append(out, rawLink{nodeRef: ref, portRef: str(lo["port_id_ref"])})
			}
		}
	}
	return out
}

// resolveLinks turns raw links into parent node IDs: links to a supernode name the inner node in
// their port ("<inner id>_outPort"), links to a binding node inside a sub-flow continue on the
// supernode's matching input port.
func (ps *parser) resolveLinks(p *Pipeline) {
	known := map[string]bool{}
	for _, n := range p.Nodes {
		known[n.ID] = true
	}
	for _, n := range p.Nodes {
		seen := map[string]bool{}
		var resolve func(l rawLink, depth int)
		resolve = func(l rawLink, depth int) {
			if depth > maxSupernodeDepth {
				return
			}
			var ids []string
			switch {
			case known[l.nodeRef]:
				ids = []string{l.nodeRef}
			case ps.supers[l.nodeRef] != nil:
				inner := strings.TrimSuffix(l.portRef, "_outPort")
				if known[inner] && ps.supers[l.nodeRef].inner[inner] {
					ids = []string{inner}
				} else {
					ps.add(SeverityError, TypeInvalidPipeline, fmt.Sprintf("link to supernode %q uses port %q, which names no node inside it", l.nodeRef, l.portRef), nodeData(n, "", nil))
				}
			case l.super != nil && l.super.bindings[l.nodeRef]:
				for _, outer := range l.super.bindingParents[l.nodeRef] {
					resolve(outer, depth+1)
				}
			default:
				// The canvas draws no such link, so the user could not see or fix it there; the
				// node runs without it.
				ps.add(SeverityWarning, TypeInvalidPipeline, fmt.Sprintf("node links to %q, which is not a node of the pipeline; the link is ignored", l.nodeRef), nodeData(n, "", l.nodeRef))
			}
			for _, id := range ids {
				if !seen[id] {
					seen[id] = true
					n.Parents = append(n.Parents, id)
				}
			}
		}
		for _, l := range ps.links[n] {
			resolve(l, 0)
		}
	}
}

func nodeLabel(no map[string]any) string {
	ad := obj(no["app_data"])
	return firstString(str(ad["label"]), str(obj(ad["ui_data"])["label"]))
}

// node builds one execution node: properties from component_parameters (v4+) or from app_data
// itself (v3), then pipeline defaults merged in.
func (ps *parser) node(no map[string]any) *Node {
	ad := obj(no["app_data"])
	cp := obj(ad["component_parameters"])
	if cp == nil {
		cp = ad
	}
	n := &Node{ID: str(no["id"]), Op: str(no["op"])}
	n.Filename = strings.TrimSpace(str(cp["filename"]))
	n.Label = firstString(strings.TrimSpace(nodeLabel(no)), path.Base(n.Filename))
	if n.Filename == "" && n.Label == "." {
		n.Label = n.ID
	}
	n.Kind = kindOf(n.Op, n.Filename)
	if n.Kind == "" {
		// Custom components are kept (so validation can name them) but their properties have
		// another shape and are not read.
		return n
	}
	n.RuntimeImage = strings.TrimSpace(str(cp["runtime_image"]))
	n.Dependencies = stringList(cp["dependencies"])
	n.IncludeSubdirectories = boolValue(cp["include_subdirectories"])
	n.Outputs = stringList(cp["outputs"])
	n.Env = envVars(cp["env_vars"])
	n.Secrets = secrets(cp["kubernetes_secrets"])
	n.Volumes = volumes(cp["mounted_volumes"])
	n.Tolerations = tolerations(cp["kubernetes_tolerations"])
	n.Annotations = keyValues(cp["kubernetes_pod_annotations"])
	n.PodLabels = keyValues(cp["kubernetes_pod_labels"])
	n.SharedMemSizeGB = ps.number(n, "kubernetes_shared_mem_size", sharedMem(cp["kubernetes_shared_mem_size"]))
	n.Resources.CPU = ps.number(n, "cpu", cp["cpu"])
	n.Resources.CPULimit = ps.number(n, "cpu_limit", cp["cpu_limit"])
	n.Resources.MemoryGB = ps.number(n, "memory", cp["memory"])
	n.Resources.MemoryLimitGB = ps.number(n, "memory_limit", cp["memory_limit"])
	gpu := ps.number(n, "gpu", cp["gpu"])
	if gpu != math.Trunc(gpu) || gpu > math.MaxInt32 || gpu < math.MinInt32 {
		ps.add(SeverityError, TypeInvalidNodeProperty, "gpu must be a whole number", nodeData(n, "gpu", cp["gpu"]))
		gpu = 0
	}
	n.Resources.GPU = int(gpu)
	n.Resources.GPUVendor = strings.TrimSpace(str(cp["gpu_vendor"]))
	if n.Resources.GPU != 0 && n.Resources.GPUVendor == "" {
		n.Resources.GPUVendor = "nvidia.com/gpu"
	}
	n.PipelineParameters = stringList(cp["pipeline_parameters"])
	n.DisableCaching = optBool(cp["disable_node_caching"])
	ps.applyDefaults(n)
	return n
}

// kindOf decides how a generic node's file runs. Seed-era files used execute-notebook-node for
// scripts too, so a known file extension wins over the op.
func kindOf(op, filename string) string {
	switch op {
	case OpNotebook, OpPython, OpR:
	default:
		return ""
	}
	if k := kindOfFile(filename); k != "" {
		return k
	}
	switch op {
	case OpNotebook:
		return KindNotebook
	case OpPython:
		return KindPython
	}
	return KindR
}

func kindOfFile(filename string) string {
	switch strings.ToLower(path.Ext(filename)) {
	case ".ipynb":
		return KindNotebook
	case ".py":
		return KindPython
	case ".r":
		return KindR
	}
	return ""
}

// applyDefaults merges pipeline_defaults into a generic node with Elyra's rules: an empty node
// value takes the default, list properties are merged (node entries win on key collision).
func (ps *parser) applyDefaults(n *Node) {
	d := ps.defaults
	if d == nil {
		return
	}
	if n.RuntimeImage == "" {
		n.RuntimeImage = strings.TrimSpace(str(d["runtime_image"]))
	}
	n.Env = mergeList(envVars(d["env_vars"]), n.Env, func(e EnvVar) string { return e.Name })
	n.Secrets = mergeList(secrets(d["kubernetes_secrets"]), n.Secrets, func(e SecretEnv) string { return e.Name })
	n.Volumes = mergeList(volumes(d["mounted_volumes"]), n.Volumes, func(e Volume) string { return e.Path })
	n.Tolerations = mergeList(tolerations(d["kubernetes_tolerations"]), n.Tolerations, func(e Toleration) string {
		return e.Key + "\x00" + e.Operator + "\x00" + e.Value + "\x00" + e.Effect
	})
	n.Annotations = mergeList(keyValues(d["kubernetes_pod_annotations"]), n.Annotations, func(e KeyValue) string { return e.Key })
	n.PodLabels = mergeList(keyValues(d["kubernetes_pod_labels"]), n.PodLabels, func(e KeyValue) string { return e.Key })
	if n.SharedMemSizeGB == 0 {
		n.SharedMemSizeGB = ps.number(n, "kubernetes_shared_mem_size", sharedMem(d["kubernetes_shared_mem_size"]))
	}
	if n.DisableCaching == nil {
		n.DisableCaching = optBool(d["disable_node_caching"])
	}
}

// mergeList merges defaults and node entries: a default's position is kept but a node entry with
// the same key replaces it; node entries with new keys follow in node order. Duplicate keys within
// one list collapse the same way (the later entry wins, as it would in a shell), so the result
// never holds a key twice whether or not defaults exist.
func mergeList[T any](defaults, node []T, key func(T) string) []T {
	if len(defaults) == 0 && len(node) == 0 {
		return nil
	}
	idx := map[string]int{}
	out := make([]T, 0, len(defaults)+len(node))
	for _, list := range [][]T{defaults, node} {
		for _, e := range list {
			k := key(e)
			if i, ok := idx[k]; ok {
				out[i] = e
				continue
			}
			idx[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// number reads a numeric property that may be a JSON number or a numeric string; anything else
// is reported and read as 0 (not set).
func (ps *parser) number(n *Node, prop string, v any) float64 {
	switch x := v.(type) {
	case nil:
		return 0
	case float64:
		return x
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0
		}
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
	}
	ps.add(SeverityError, TypeInvalidNodeProperty, fmt.Sprintf("%s must be a number", prop), nodeData(n, prop, v))
	return 0
}

func sharedMem(v any) any {
	if o, ok := v.(map[string]any); ok {
		return o["size"]
	}
	return v
}

// parameters reads the typed pipeline parameters; shape problems are left to Validate, which
// sees the same values in the model.
func (ps *parser) parameters(v any) []Parameter {
	var out []Parameter
	for _, e := range arr(v) {
		o := obj(e)
		if o == nil {
			ps.add(SeverityError, TypeInvalidPipelineParameter, "a pipeline parameter entry is not an object", map[string]any{DataValue: e})
			continue
		}
		dv := obj(o["default_value"])
		prm := Parameter{
			Name:        strings.TrimSpace(str(o["name"])),
			Description: str(o["description"]),
			Type:        firstString(str(dv["type"]), ParamString),
			Default:     dv["value"],
			Value:       o["value"],
			Required:    boolValue(o["required"]),
		}
		// Elyra's editor writes "" for an unset value.
		if s, ok := prm.Value.(string); ok && s == "" && prm.Type != ParamString {
			prm.Value = nil
		}
		if s, ok := prm.Default.(string); ok && s == "" && prm.Type != ParamString {
			prm.Default = nil
		}
		out = append(out, prm)
	}
	return out
}

// propList decodes an Elyra list property whose entries are either objects (current files) or the
// older "a=b:c" strings; fromString and fromObject build one entry each, and entries that decode to
// the zero value (blank or of another JSON type) are dropped.
func propList[T comparable](v any, fromString func(string) T, fromObject func(map[string]any) T) []T {
	var out []T
	var zero T
	for _, e := range arr(v) {
		var t T
		switch x := e.(type) {
		case string:
			t = fromString(x)
		case map[string]any:
			t = fromObject(x)
		}
		if t != zero {
			out = append(out, t)
		}
	}
	return out
}

// envVars accepts v8 objects and v3-v7 "NAME=value" strings.
func envVars(v any) []EnvVar {
	return propList(v, func(x string) EnvVar {
		name, val, _ := strings.Cut(x, "=")
		return EnvVar{Name: strings.TrimSpace(name), Value: val}
	}, func(x map[string]any) EnvVar {
		return EnvVar{Name: strings.TrimSpace(str(x["env_var"])), Value: scalarString(x["value"])}
	})
}

// secrets accepts objects and the v7 "ENV=secret:key" strings.
func secrets(v any) []SecretEnv {
	return propList(v, func(x string) SecretEnv {
		name, rest, _ := strings.Cut(x, "=")
		sec, key, _ := strings.Cut(rest, ":")
		return SecretEnv{Name: strings.TrimSpace(name), Secret: strings.TrimSpace(sec), Key: strings.TrimSpace(key)}
	}, func(x map[string]any) SecretEnv {
		return SecretEnv{Name: strings.TrimSpace(str(x["env_var"])), Secret: strings.TrimSpace(str(x["name"])), Key: strings.TrimSpace(str(x["key"]))}
	})
}

// volumes accepts objects and the v7 "/path=pvc-name" strings.
func volumes(v any) []Volume {
	return propList(v, func(x string) Volume {
		p, pvc, _ := strings.Cut(x, "=")
		return Volume{Path: strings.TrimSpace(p), PVCName: strings.TrimSpace(pvc)}
	}, func(x map[string]any) Volume {
		return Volume{Path: strings.TrimSpace(str(x["path"])), PVCName: strings.TrimSpace(str(x["pvc_name"])),
			SubPath: strings.TrimSpace(str(x["sub_path"])), ReadOnly: boolValue(x["read_only"])}
	})
}

// tolerations accepts objects and the v7 "id=key:operator:value:effect" strings.
func tolerations(v any) []Toleration {
	return propList(v, func(x string) Toleration {
		if _, rest, ok := strings.Cut(x, "="); ok {
			x = rest
		}
		f := strings.SplitN(x, ":", 4)
		for len(f) < 4 {
			f = append(f, "")
		}
		return Toleration{Key: strings.TrimSpace(f[0]), Operator: strings.TrimSpace(f[1]), Value: strings.TrimSpace(f[2]), Effect: strings.TrimSpace(f[3])}
	}, func(x map[string]any) Toleration {
		return Toleration{Key: strings.TrimSpace(str(x["key"])), Operator: strings.TrimSpace(str(x["operator"])),
			Value: strings.TrimSpace(scalarString(x["value"])), Effect: strings.TrimSpace(str(x["effect"]))}
	})
}

// keyValues accepts objects and the v7 "key=value" strings.
func keyValues(v any) []KeyValue {
	return propList(v, func(x string) KeyValue {
		k, val, _ := strings.Cut(x, "=")
		return KeyValue{Key: strings.TrimSpace(k), Value: strings.TrimSpace(val)}
	}, func(x map[string]any) KeyValue {
		return KeyValue{Key: strings.TrimSpace(str(x["key"])), Value: strings.TrimSpace(scalarString(x["value"]))}
	})
}

// --- small accessors over decoded JSON; all tolerate any input type. ---

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// scalarString renders a JSON scalar as a string (numbers and booleans appear as env var values).
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func firstString(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// stringList accepts a list of strings or a single string (seed-era files sometimes stored one
// dependency as a plain string); blank entries are dropped.
func stringList(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		if s := strings.TrimSpace(x); s != "" {
			out = append(out, s)
		}
	case []any:
		for _, e := range x {
			if s := strings.TrimSpace(scalarString(e)); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e9 {
			return int(x), true
		}
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(x))
		return i, err == nil
	}
	return 0, false
}

func boolValue(v any) bool {
	b := optBool(v)
	return b != nil && *b
}

// optBool reads JSON booleans and Elyra's "True"/"False" strings; nil when unset.
func optBool(v any) *bool {
	var b bool
	switch x := v.(type) {
	case bool:
		b = x
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "1":
			b = true
		case "false", "no", "0":
			b = false
		default:
			return nil
		}
	default:
		return nil
	}
	return &b
}
