package pipeline

import (
	"encoding/json"
	"testing"
)

// tnode describes one node of a test pipeline.
type tnode struct {
	id, op, label string
	parents       []string
	props         map[string]any
}

// gnode is a generic node running file, with an image so that only what a test sets is wrong.
func gnode(id, file string, parents ...string) tnode {
	op := OpPython
	switch kindOfFile(file) {
	case KindNotebook:
		op = OpNotebook
	case KindR:
		op = OpR
	}
	return tnode{id: id, op: op, label: id, parents: parents,
		props: map[string]any{"filename": file, "runtime_image": "registry.example/img:1"}}
}

func (n tnode) with(key string, v any) tnode {
	props := map[string]any{}
	for k, x := range n.props {
		props[k] = x
	}
	props[key] = v
	n.props = props
	return n
}

// v8doc renders a current-format (v8) pipeline file with the given pipeline properties.
func v8doc(t testing.TB, runtimeType string, props map[string]any, nodes ...tnode) []byte {
	t.Helper()
	var ns []any
	for _, n := range nodes {
		var links []any
		for _, p := range n.parents {
			links = append(links, map[string]any{"id": p + "-" + n.id, "node_id_ref": p, "port_id_ref": "outPort"})
		}
		ns = append(ns, map[string]any{
			"id": n.id, "type": "execution_node", "op": n.op,
			"app_data": map[string]any{"label": n.label, "component_parameters": n.props,
				"ui_data": map[string]any{"label": n.label}},
			"inputs":  []any{map[string]any{"id": "inPort", "links": links}},
			"outputs": []any{map[string]any{"id": "outPort"}},
		})
	}
	if props == nil {
		props = map[string]any{}
	}
	if _, ok := props["name"]; !ok {
		props["name"] = "test"
	}
	ad := map[string]any{"version": 8, "properties": props}
	if runtimeType != "" {
		ad["runtime_type"] = runtimeType
	}
	doc := map[string]any{
		"doc_type": "pipeline", "version": "3.0", "id": "elyra-auto-generated-pipeline",
		"primary_pipeline": "main",
		"pipelines":        []any{map[string]any{"id": "main", "runtime_ref": "", "nodes": ns, "app_data": ad}},
		"schemas":          []any{},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// load builds a v8 file from nodes, creates the files the nodes name and loads it.
func load(t *testing.T, runtimeType string, props map[string]any, nodes ...tnode) (*Pipeline, []Issue) {
	t.Helper()
	data := v8doc(t, runtimeType, props, nodes...)
	root := t.TempDir()
	p, issues := Parse(data)
	if p == nil {
		t.Fatalf("Parse failed:\n%s", dump(issues))
	}
	createNamedFiles(t, root, p)
	return Load(data, root)
}
