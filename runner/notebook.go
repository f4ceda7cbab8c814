package runner

import (
	"errors"
	"os/exec"
)

// notebookCommand returns the command that executes a notebook node. Notebook execution (an
// embedded nbclient driver with live cell output) is tracked in issue 5; until it lands a notebook
// node fails with a clear message instead of running something half-done.
func (s *step) notebookCommand(wd, file string) (*exec.Cmd, error) {
	return nil, errors.New("cannot run " + file + ": notebook nodes are not supported by this kfbridge-step yet")
}
