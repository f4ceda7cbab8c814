package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

// KFP visualization files. A node's code writes them in its working directory (Elyra's
// convention); the runner validates them and copies them to the metrics directory, where the
// compiled pipeline declares the mlpipeline-metrics and mlpipeline-ui-metadata output artifacts
// (docs/step-runner.md, "KFP visualizations").
const (
	// MetricsFile is the KFP v1 metrics file name.
	MetricsFile = "mlpipeline-metrics.json"
	// UIMetadataFile is the KFP v1 UI metadata (output viewers) file name.
	UIMetadataFile = "mlpipeline-ui-metadata.json"
	// DefaultMetricsDir is where the compilers point the output artifacts (kfp/compile).
	DefaultMetricsDir = "/tmp/kfbridge"
	// EnvMetricsDir overrides DefaultMetricsDir.
	EnvMetricsDir = "KFBRIDGE_METRICS_DIR"
)

// maxMetrics is the most metrics KFP's persistence agent records per run.
const maxMetrics = 50

// metricName is KFP's rule for metric names.
var metricName = regexp.MustCompile(`^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$`)

// uiOutputTypes are the viewer types the KFP v1 UI renders.
var uiOutputTypes = map[string]bool{
	"confusion_matrix": true, "markdown": true, "roc": true, "table": true, "tensorboard": true, "web-app": true,
}

// validateMetrics checks an mlpipeline-metrics.json body the way KFP reads it and returns the
// number of metrics.
func validateMetrics(b []byte) (int, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := doc["metrics"]
	if !ok {
		return 0, errors.New(`no "metrics" array`)
	}
	var metrics []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &metrics); err != nil {
		return 0, fmt.Errorf(`"metrics" is not an array of objects: %w`, err)
	}
	if len(metrics) > maxMetrics {
		return 0, fmt.Errorf("%d metrics; KFP records at most %d per run", len(metrics), maxMetrics)
	}
	var errs []error
	for i, m := range metrics {
		var name string
		if err := json.Unmarshal(m["name"], &name); err != nil || !metricName.MatchString(name) {
			errs = append(errs, fmt.Errorf("metrics[%d]: name %s must match %s", i, m["name"], metricName))
		}
		var v float64
		if err := json.Unmarshal(m["numberValue"], &v); err != nil || math.IsNaN(v) {
			errs = append(errs, fmt.Errorf("metrics[%d] (%s): numberValue %s is not a number", i, name, m["numberValue"]))
		}
		if f, ok := m["format"]; ok {
			var format string
			if err := json.Unmarshal(f, &format); err != nil || (format != "RAW" && format != "PERCENTAGE") {
				errs = append(errs, fmt.Errorf("metrics[%d] (%s): format %s must be RAW or PERCENTAGE", i, name, f))
			}
		}
	}
	return len(metrics), errors.Join(errs...)
}

// validateUIMetadata checks an mlpipeline-ui-metadata.json body and returns the number of outputs.
func validateUIMetadata(b []byte) (int, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := doc["outputs"]
	if !ok {
		return 0, errors.New(`no "outputs" array`)
	}
	var outputs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &outputs); err != nil {
		return 0, fmt.Errorf(`"outputs" is not an array of objects: %w`, err)
	}
	var errs []error
	for i, o := range outputs {
		var typ string
		if err := json.Unmarshal(o["type"], &typ); err != nil || !uiOutputTypes[typ] {
			errs = append(errs, fmt.Errorf("outputs[%d]: type %s must be one of %s", i, o["type"], strings.Join(sortedKeys(uiOutputTypes), ", ")))
		}
		for _, field := range []string{"source", "storage"} {
			if v, ok := o[field]; ok {
				var s string
				if json.Unmarshal(v, &s) != nil {
					errs = append(errs, fmt.Errorf("outputs[%d]: %s must be a string", i, field))
				}
			}
		}
	}
	return len(outputs), errors.Join(errs...)
}

// metricsDir is where validated files are copied, or "" when they are not copied: the local
// runtime runs steps side by side on one machine, where a shared /tmp/kfbridge means nothing, so
// only an explicit KFBRIDGE_METRICS_DIR applies there.
func (s *step) metricsDir() string {
	if d := s.getenv(EnvMetricsDir); d != "" {
		return d
	}
	if s.getenv("ELYRA_RUNTIME_ENV") == "local" {
		return ""
	}
	return DefaultMetricsDir
}

// collectVisualizations validates the KFP visualization files the node wrote in its working
// directory, copies the valid ones to the metrics directory and uploads them next to the step's
// log. An invalid file is reported and left out (KFP would reject it) but does not fail the step,
// as in Elyra.
func (s *step) collectVisualizations(ctx context.Context, wd string) {
	dir := s.metricsDir()
	for _, f := range []struct {
		name     string
		what     string
		validate func([]byte) (int, error)
	}{{MetricsFile, "metric", validateMetrics}, {UIMetadataFile, "output", validateUIMetadata}} {
		src := filepath.Join(wd, f.name)
		b, err := os.ReadFile(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.sink.system(fmt.Sprintf("KFP visualizations: %s: %v", f.name, err))
			continue
		}
		n, err := f.validate(b)
		if err != nil {
			s.sink.system(fmt.Sprintf("KFP visualizations: %s is invalid and is not passed to KFP: %v", f.name, err))
			continue
		}
		var placed []string
		if dir != "" {
			dst := filepath.Join(dir, f.name)
			if err := writeFileAtomic(dst, b); err != nil {
				s.sink.system(fmt.Sprintf("KFP visualizations: copy %s: %v", f.name, err))
			} else {
				placed = append(placed, dst)
			}
		}
		if s.store != nil && s.cfg.directory != "" {
			key := storage.StepKey(s.cfg.directory, s.cfg.stepID, f.name)
			upCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err := s.store.Put(upCtx, key, bytes.NewReader(b), int64(len(b)))
			cancel()
			if err != nil {
				s.sink.system(fmt.Sprintf("KFP visualizations: upload %s: %v", f.name, err))
			} else {
				placed = append(placed, key)
			}
		}
		sort.Strings(placed)
		s.sink.system(fmt.Sprintf("KFP visualizations: %s (%d %s(s)) -> %s", f.name, n, f.what, strings.Join(placed, ", ")))
	}
}

// writeFileAtomic writes b to dst through a temporary file, so an artifact collector never sees a
// half-written file.
func writeFileAtomic(dst string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
