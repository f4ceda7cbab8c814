package server

import (
	"context"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/runs"
)

// elyraSubmit submits an Elyra schedule through the run manager on the runtime configuration the
// pipeline names (the manager resolves a stored KFP runtime, with its secrets, by name).
func elyraSubmit(mgr *runs.Manager) handlers.ElyraSubmitFunc {
	return func(ctx context.Context, sub runs.Submission, rc runs.RuntimeConfig) (*runs.Run, error) {
		sub.Runtime = rc.Name
		return mgr.Submit(ctx, sub)
	}
}
