package compile_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kfbridge/kfbridge/kfp/compile"
)

// checkYAML transcodes v and reads the YAML back with go-yaml (YAML 1.1 rules, via
// sigs.k8s.io/yaml): the value must come back unchanged.
func checkYAML(t *testing.T, v any) string {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	y, err := compile.YAML(js)
	if err != nil {
		t.Fatalf("YAML(%s): %v", js, err)
	}
	back, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("YAML output does not parse: %v\n%s", err, y)
	}
	var a, b any
	if err := json.Unmarshal(js, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(back, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("value changed through YAML:\nin:   %s\nout:  %s\nyaml:\n%s", js, back, y)
	}
	return string(y)
}

func TestYAMLRoundTrip(t *testing.T) {
	tricky := []string{
		"", " ", "true", "True", "yes", "no", "on", "off", "y", "n", "null", "~", "NaN", ".inf", "-.inf",
		"10", "0.5", "1e3", "0x1F", "0o17", "012", "1_000", "2026-11-28", "12:30:00", "1:20",
		"- item", "-", "a: b", "a:b", "key:", "#comment", "a #b", "a# b", "&anchor", "*alias", "!tag",
		"%dir", "@at", "`tick", "{flow}", "[flow]", "'single'", "\"double\"", "back\\slash",
		"tab\there", "new\nline", "trailing\n", "two\n\n", "\nleading newline", " leading space\nx",
		"line\n  indented\n\nblank", "spaces  \nafter", "   \nonly spaces line", "ünïcödé", "emoji 😀",
		"http://minio:9000/b?x=1&y=2", "{{workflow.uid}}", "{{$.inputs.parameters['p']}}", "<>&",
		"\u2028sep", "ctrl\x01char", "x\r\ny", "ends with space ", "a  b", "a -b", "-a", "/abs/path",
		"pipelines.kubeflow.org/enable_caching", "set -eu\nexec \"$b\" \"$@\"\n",
	}
	for _, s := range tricky {
		checkYAML(t, map[string]any{"k": s, s: "v", "list": []any{s, map[string]any{"k": s}, []any{s}}})
	}
	checkYAML(t, map[string]any{
		"empty_map": map[string]any{}, "empty_list": []any{}, "nums": []any{0, -1.5, 1e21, true, false, nil},
		"nested": []any{[]any{[]any{"a", map[string]any{}}, []any{}}, map[string]any{"a": []any{map[string]any{"b": []any{"c"}}}}},
	})
	checkYAML(t, []any{"top", "level"})
	checkYAML(t, "scalar")
}

// TestYAMLRandom feeds random strings over a YAML-hostile alphabet through the transcoder.
func TestYAMLRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab:-# \n\t'\"{}[]&*!|>%@`,?=~0123456789.eE_/\\üé\u0085")
	for range 3000 {
		n := r.IntN(12)
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := b.String()
		checkYAML(t, map[string]any{s: []any{s, map[string]any{"x": s}}, "v": s})
	}
}

func TestYAMLStyle(t *testing.T) {
	got := checkYAML(t, map[string]any{
		"apiVersion": "v1",
		"spec":       map[string]any{"args": []any{"--x", "1"}, "items": []any{map[string]any{"a": "b", "c": []any{"d"}}}},
		"script":     "line one\nline two\n",
	})
	want := `apiVersion: v1
script: |
  line one
  line two
spec:
  args:
  - --x
  - "1"
  items:
  - a: b
    c:
    - d
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
