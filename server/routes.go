package server

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
	"github.com/kfbridge/kfbridge/web"
)

// deps are what the routes need; built once in serve.
type deps struct {
	log     *slog.Logger
	cfg     *Config
	runs    *runs.Manager
	logs    *logstream.Store
	archive logstream.Archive // the step logs the runners archive in the object store
	origins handlers.OriginChecker
	export  handlers.ExportFunc
	// runtimes is the one runtime store behind /api/v1/runtimes and (later) Elyra's metadata API.
	runtimes *runs.RuntimeStore
	// elyra configures Elyra's REST API (handlers/elyra*.go).
	elyra handlers.ElyraConfig
}

// addRoutes is the one list of kfbridge's endpoints.
func addRoutes(r chi.Router, d deps) {
	// Unauthenticated liveness for probes; it reveals nothing.
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })

	// Behind jupyter-server-proxy with --trust-proxy-auth, Jupyter has authenticated the user.
	trust := handlers.TrustProxyAuth(d.log, d.cfg.Token, d.cfg.TrustProxyAuth)

	r.Route("/api/v1", func(r chi.Router) {
		// Step runners authenticate with their run's push token, not the user's API token.
		r.Post("/runs/{id}/steps/{step}/lines", handlers.PushLines(d.log, d.runs, d.logs).ServeHTTP)
		r.Post("/runs/{id}/steps/{step}/end", handlers.PushEnd(d.log, d.runs, d.logs).ServeHTTP)
		// Log websockets authenticate themselves: browsers cannot set headers on a websocket, so
		// they also accept the token in a first message (docs/protocol.md).
		// The upgrade itself may carry the header, ?token= or the web UI's session cookie.
		_, checkToken := handlers.TokenAuth(d.cfg.Token)
		authorize := func(r *http.Request) bool { return handlers.Authenticated(r, d.cfg.Token) }
		ws := handlers.LogSocketConfig{Log: d.log, Runs: d.runs, Logs: d.logs, Origins: d.origins, Authorize: authorize, CheckToken: checkToken}
		r.Get("/ws", trust(handlers.LogSocket(ws)).ServeHTTP)
		r.Get("/runs/{id}/logs", trust(handlers.RunLogSocket(ws)).ServeHTTP)
		// The browser session (login/logout, CSRF token) checks credentials itself.
		r.Handle("/session", trust(handlers.Session(d.log, d.cfg.Token)))

		r.Group(func(r chi.Router) {
			r.Use(trust, handlers.RequireToken(d.log, d.cfg.Token))
			r.Get("/healthz", handlers.Health(Version).ServeHTTP)
			r.Post("/runs", handlers.SubmitRun(d.log, d.runs, handlers.SubmitConfig{
				Workspace: d.cfg.Workspace,
				BundleDir: d.cfg.DataDir + "/bundles",
				MaxBundle: d.cfg.MaxBundle,
				Extract:   storage.ExtractArchive,
			}).ServeHTTP)
			r.Post("/pipelines/validate", handlers.ValidatePipeline(d.log, d.cfg.Workspace).ServeHTTP)
			r.Post("/pipelines/export", handlers.ExportPipeline(d.log, d.cfg.Workspace, d.export).ServeHTTP)
			r.Get("/runs", handlers.ListRuns(d.runs).ServeHTTP)
			r.Get("/files", handlers.ListFiles(d.log, d.cfg.Workspace).ServeHTTP)
			r.Get("/runs/{id}", handlers.GetRun(d.log, d.runs).ServeHTTP)
			r.Post("/runs/{id}:cancel", handlers.CancelRun(d.log, d.runs).ServeHTTP)
			logs := handlers.LogsConfig{Log: d.log, Runs: d.runs, Logs: d.logs, Archive: d.archive, TempDir: d.cfg.DataDir}
			r.Get("/runs/{id}/steps/{step}/log", handlers.StepLog(logs).ServeHTTP)
			r.Get("/runs/{id}/steps/{step}/log.txt", handlers.StepLogText(logs).ServeHTTP)
			r.Get("/runtimes", handlers.ListRuntimes(d.log, d.runtimes).ServeHTTP)
			r.Post("/runtimes", handlers.CreateRuntime(d.log, d.runtimes).ServeHTTP)
			r.Get("/runtimes/{name}", handlers.GetRuntime(d.log, d.runtimes).ServeHTTP)
			r.Put("/runtimes/{name}", handlers.UpdateRuntime(d.log, d.runtimes).ServeHTTP)
			r.Delete("/runtimes/{name}", handlers.DeleteRuntime(d.log, d.runtimes).ServeHTTP)
			r.Get("/runtime-images", handlers.ListRuntimeImages(d.log, d.runtimes).ServeHTTP)
			r.Post("/runtime-images", handlers.CreateRuntimeImage(d.log, d.runtimes).ServeHTTP)
			r.Get("/runtime-images/{name}", handlers.GetRuntimeImage(d.log, d.runtimes).ServeHTTP)
			r.Put("/runtime-images/{name}", handlers.UpdateRuntimeImage(d.log, d.runtimes).ServeHTTP)
			r.Delete("/runtime-images/{name}", handlers.DeleteRuntimeImage(d.log, d.runtimes).ServeHTTP)
		})
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			handlers.Error(d.log, w, r, errNotFound(r))
		})
	})

	// Elyra's REST API, so Elyra's JupyterLab frontend can use kfbridge as its backend: at /elyra/…,
	// and at the root for jupyter-server-proxy's named server "elyra", which strips <base_url>elyra.
	r.Route("/elyra", func(r chi.Router) {
		addElyraRoutes(r, d, trust)
		r.NotFound(handlers.ElyraNotFound(d.log).ServeHTTP)
		r.MethodNotAllowed(handlers.ElyraMethodNotAllowed().ServeHTTP)
	})
	r.Group(func(r chi.Router) { addElyraRoutes(r, d, trust) })

	// The web UI at the root. Its pages are public (they hold no data); ?token= on a page logs the
	// browser in with a session cookie and redirects to the page without the token.
	ui := handlers.Login(d.log, d.cfg.Token)(web.Handler(web.Options{FrameAncestors: d.cfg.Origins}))
	r.Get("/*", ui.ServeHTTP)
	r.Head("/*", ui.ServeHTTP)
}

// addElyraRoutes lists Elyra's API routes (relative to where Elyra's frontend has its "elyra/").
func addElyraRoutes(r chi.Router, d deps, trust func(http.Handler) http.Handler) {
	e := d.elyra
	r.Use(trust, handlers.ElyraRequireToken(d.log, d.cfg.Token))
	r.Get("/elyra.yaml", handlers.ElyraSpec(e.Spec).ServeHTTP)
	r.Get("/schemaspace", handlers.ElyraSchemaspaces().ServeHTTP)
	r.Get("/schemaspace/{schemaspace}", handlers.ElyraSchemaspace(d.log).ServeHTTP)
	r.Get("/schema/{schemaspace}", handlers.ElyraSchemas(d.log).ServeHTTP)
	r.Get("/schema/{schemaspace}/{schema}", handlers.ElyraSchema(d.log).ServeHTTP)
	r.Get("/metadata/{schemaspace}", handlers.ElyraListMetadata(d.log, d.runtimes).ServeHTTP)
	r.Post("/metadata/{schemaspace}", handlers.ElyraCreateMetadata(d.log, d.runtimes, e.Paths).ServeHTTP)
	r.Get("/metadata/{schemaspace}/{name}", handlers.ElyraGetMetadata(d.log, d.runtimes).ServeHTTP)
	r.Put("/metadata/{schemaspace}/{name}", handlers.ElyraUpdateMetadata(d.log, d.runtimes).ServeHTTP)
	r.Delete("/metadata/{schemaspace}/{name}", handlers.ElyraDeleteMetadata(d.log, d.runtimes).ServeHTTP)
	r.Post("/pipeline/schedule", handlers.ElyraSchedule(e).ServeHTTP)
	r.Post("/pipeline/validate", handlers.ElyraValidate(e).ServeHTTP)
	r.Post("/pipeline/export", handlers.ElyraExport(e).ServeHTTP)
	r.Get("/pipeline/runtimes/types", handlers.ElyraRuntimeTypes().ServeHTTP)
	r.Put("/pipeline/components/cache", handlers.ElyraComponentCache(d.log).ServeHTTP)
	r.Put("/pipeline/components/cache/{catalog}", handlers.ElyraComponentCache(d.log).ServeHTTP)
	r.Get("/pipeline/components/{runtime_type}", handlers.ElyraPalette(e).ServeHTTP)
	r.Get("/pipeline/components/{runtime_type}/{component_id}", handlers.ElyraComponent(e).ServeHTTP)
	r.Get("/pipeline/components/{runtime_type}/{component_id}/properties", handlers.ElyraComponentProperties(e).ServeHTTP)
	r.Get("/pipeline/{runtime_type}/properties", handlers.ElyraPipelineProperties(e).ServeHTTP)
	r.Get("/pipeline/{runtime_type}/parameters", handlers.ElyraPipelineParameters(e).ServeHTTP)
	r.Get("/contents/properties/*", handlers.ElyraContentsProperties(e).ServeHTTP)
}
