// Command kfbridge is the kfbridge service and its CLI; see README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kfbridge/kfbridge/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := server.Run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
