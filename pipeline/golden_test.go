package pipeline

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

// TestGoldenVersions reads the same logical pipeline written in every supported file-format
// version (testdata/versions/v3..v8.pipeline; v8 nests two nodes in a supernode and takes images
// and env vars from pipeline defaults, v3 stores node properties flat with "K=V" env strings) and
// checks that each yields the one normalized model in testdata/golden/model.json.
func TestGoldenVersions(t *testing.T) {
	golden := filepath.Join("testdata", "golden", "model.json")
	var first []byte
	for v := MinVersion; v <= CurrentVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "versions", fmt.Sprintf("v%d.pipeline", v)))
			if err != nil {
				t.Fatal(err)
			}
			p, issues := Parse(data)
			if p == nil || len(issues) > 0 {
				t.Fatalf("Parse: want a model and no issues, got %v:\n%s", p != nil, dump(issues))
			}
			if p.Version != v {
				t.Errorf("Version = %d, want %d", p.Version, v)
			}
			// The model is version independent except for the recorded source version.
			p.Version = 0
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			if first == nil {
				first = got
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("model differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}

			// The same files make a valid pipeline in a workspace that holds what it names.
			root := workspace(t, "etl/prepare.ipynb", "etl/helpers.py", "etl/conf/a.yaml", "etl/conf/b.yaml",
				"train.py", "report.r", "templates/main.html", "templates/parts/head.html", "publish.py")
			p.Version = v
			if issues := Validate(p, root); len(issues) > 0 {
				t.Errorf("Validate: want no issues, got:\n%s", dump(issues))
			}
			_, files, err := NodeFiles(root, p.Node("c3"))
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"report.r", "templates/main.html", "templates/parts/head.html"}; fmt.Sprint(files) != fmt.Sprint(want) {
				t.Errorf("NodeFiles(report) = %v, want %v", files, want)
			}
		})
	}
}
