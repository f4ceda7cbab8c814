// Package cputime reads the process's CPU time, for benchmarks that report CPU per operation next
// to wall time: on a shared machine wall time swings with other load, CPU time much less.
package cputime

import (
	"syscall"
	"time"
)

// Now is the user+system CPU time of this process so far (all threads, GC included).
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
