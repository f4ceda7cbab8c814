//go:build !linux

package runner

import "os"

// mapLog is not used where mmap is not wired up: the pusher reads with ReadAt.
func mapLog(*os.File, int) []byte { return nil }

func unmapLog([]byte) {}
