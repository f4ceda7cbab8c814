// Command kfbridge-step is the in-container step runner; see docs/step-runner.md.
package main

import (
	"context"
	"os"

	"github.com/kfbridge/kfbridge/runner"
)

func main() {
	os.Exit(runner.Main(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
