package compiletest

import (
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/internal/cputime"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
)

// ReportCPU adds a "cpu-ms/op" metric: process CPU time (all threads, GC included) per iteration.
// On a shared machine wall time per op swings with other load; CPU time per op is what the
// compiler itself costs. Call it right after the benchmark loop with the time taken before it.
func ReportCPU(b *testing.B, before time.Duration) {
	b.ReportMetric(float64(CPUTime()-before)/float64(b.N)/1e6, "cpu-ms/op")
}

// CPUTime is the user+system CPU time of this process so far.
func CPUTime() time.Duration { return cputime.Now() }

// BenchCompile1000 is the body of both targets' BenchmarkCompile1000: compile the generated
// 1,000-node pipeline with Options() and report allocations, CPU time and output size.
func BenchCompile1000(b *testing.B, compileFn func(*pipeline.Pipeline, compile.Options) ([]byte, error)) {
	p := Generated(1000)
	opts := Options()
	b.ReportAllocs()
	var size int
	cpu := CPUTime()
	for b.Loop() {
		out, err := compileFn(p, opts)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	ReportCPU(b, cpu)
	b.ReportMetric(float64(size), "output-bytes")
}
