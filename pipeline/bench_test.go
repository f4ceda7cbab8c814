package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkParse parses the largest real Elyra file of the corpus.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "corpus", "cli__pipelines__pipeline_with_notebooks_and_scripts.pipeline"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := Parse(data); p == nil {
			b.Fatal("no model")
		}
	}
}

// BenchmarkLoad parses and validates a 200-node chain whose nodes each glob a directory of 50
// files, the cost the validate endpoint pays for a large pipeline.
func BenchmarkLoad(b *testing.B) {
	const nodes, files = 200, 50
	var names []string
	for i := range files {
		names = append(names, fmt.Sprintf("proj/data/f%02d.csv", i))
	}
	var ns []tnode
	for i := range nodes {
		file := fmt.Sprintf("proj/step%03d.py", i)
		names = append(names, file)
		n := gnode(fmt.Sprintf("n%03d", i), file).with("dependencies", []any{"data/*.csv"})
		if i > 0 {
			n.parents = []string{fmt.Sprintf("n%03d", i-1)}
		}
		ns = append(ns, n)
	}
	root := workspace(b, names...)
	data := v8doc(b, RuntimeKFP, nil, ns...)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		p, issues := Load(data, root)
		if p == nil || len(issues) != 0 {
			b.Fatalf("issues: %v", issues)
		}
	}
}
