package runner

import (
	"io"
	"os"
	"syscall"
)

// fSetPipeSz is F_SETPIPE_SZ (linux/fcntl.h).
const fSetPipeSz = 1031

// growPipe enlarges the child's output pipe to 1 MiB (the default is 64 KiB), so a child printing
// a flood of lines keeps running while the runner is briefly busy instead of blocking in write.
// Failure (an old kernel, a lower pipe-max-size) just keeps the default.
func growPipe(r io.Reader) {
	f, ok := r.(*os.File)
	if !ok {
		return
	}
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
		})
	}
}
