package compiletest

import (
	"syscall"
	"testing"
	"time"
)

// ReportCPU adds a "cpu-ms/op" metric: process CPU time (all threads, GC included) per iteration.
// On a shared machine wall time per op swings with other load; CPU time per op is what the
// compiler itself costs. Call it right after the benchmark loop with the time taken before it.
func ReportCPU(b *testing.B, before time.Duration) {
	b.ReportMetric(float64(CPUTime()-before)/float64(b.N)/1e6, "cpu-ms/op")
}

// CPUTime is the user+system CPU time of this process so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
