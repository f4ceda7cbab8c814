package runner

import (
	"os"
	"syscall"
)

// mapLog maps size bytes of f read-only (more than the file holds: it grows while the step runs,
// and only its written part is read). The pusher sends batches straight from the mapping, so a
// flood of output is not copied from the page cache into a buffer first. It returns nil where
// mapping fails; the caller then reads with ReadAt.
func mapLog(f *os.File, size int) []byte {
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil
	}
	return b
}

func unmapLog(b []byte) {
	if b != nil {
		syscall.Munmap(b)
	}
}
