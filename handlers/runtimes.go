package handlers

import (
	"log/slog"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/runs"
)

// The runtime handlers serve /api/v1/runtimes and /api/v1/runtime-images in Elyra's instance
// shape {name, display_name, schema_name, metadata}. Every body they write comes from the store's
// read paths, which redact secrets (runs.SecretPlaceholder), and the store's errors never quote a
// secret, so no response or log line carries one.

// metadataKind adapts one of the store's two instance kinds to the generic handlers below.
type metadataKind[T any] struct {
	space  string // list key and URL segment: "runtimes" or "runtime-images"
	list   func() ([]T, error)
	get    func(name string) (T, error)
	create func(v T) (T, error)
	update func(name string, v T) (T, error)
	remove func(name string) error
	name   func(v T) string
}

func runtimeKind(s *runs.RuntimeStore) metadataKind[runs.RuntimeConfig] {
	return metadataKind[runs.RuntimeConfig]{
		space: runs.SchemaspaceRuntimes, list: s.ListRuntimes, get: s.GetRuntime, create: s.CreateRuntime,
		update: s.UpdateRuntime, remove: s.DeleteRuntime, name: func(v runs.RuntimeConfig) string { return v.Name },
	}
}

func imageKind(s *runs.RuntimeStore) metadataKind[runs.RuntimeImage] {
	return metadataKind[runs.RuntimeImage]{
		space: runs.SchemaspaceRuntimeImages, list: s.ListImages, get: s.GetImage, create: s.CreateImage,
		update: s.UpdateImage, remove: s.DeleteImage, name: func(v runs.RuntimeImage) string { return v.Name },
	}
}

// listMetadata answers {"<schemaspace>": [...]}, as Elyra does. Instances whose files cannot be
// read are left out and logged, so one broken file does not hide the rest.
func listMetadata[T any](log *slog.Logger, k metadataKind[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		items, err := k.list()
		if err != nil {
			log.Warn("skipping unreadable metadata instances", "schemaspace", k.space, "err", err)
		}
		encode(w, http.StatusOK, map[string]any{k.space: items})
	})
}

func getMetadata[T any](log *slog.Logger, k metadataKind[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := k.get(chi.URLParam(r, "name"))
		if err != nil {
			Error(log, w, r, err)
			return
		}
		encode(w, http.StatusOK, v)
	})
}

// createMetadata answers 201 with the stored instance and its Location; 409 if the name is taken.
func createMetadata[T any](log *slog.Logger, k metadataKind[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decode[T](w, r)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		v, err := k.create(in)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		w.Header().Set("Location", "/api/v1/"+k.space+"/"+url.PathEscape(k.name(v)))
		encode(w, http.StatusCreated, v)
	})
}

// updateMetadata replaces an instance. Secrets sent as runs.SecretPlaceholder, or left out, keep
// their stored values (the store's merge rule).
func updateMetadata[T any](log *slog.Logger, k metadataKind[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decode[T](w, r)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		v, err := k.update(chi.URLParam(r, "name"), in)
		if err != nil {
			Error(log, w, r, err)
			return
		}
		encode(w, http.StatusOK, v)
	})
}

func deleteMetadata[T any](log *slog.Logger, k metadataKind[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := k.remove(chi.URLParam(r, "name")); err != nil {
			Error(log, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// ListRuntimes handles GET /api/v1/runtimes: {"runtimes": [...]}, the built-in local runtime first.
func ListRuntimes(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return listMetadata(log, runtimeKind(s))
}

// GetRuntime handles GET /api/v1/runtimes/{name}.
func GetRuntime(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return getMetadata(log, runtimeKind(s))
}

// CreateRuntime handles POST /api/v1/runtimes: 201 with the runtime, 409 if the name is taken,
// 400 naming the invalid field.
func CreateRuntime(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return createMetadata(log, runtimeKind(s))
}

// UpdateRuntime handles PUT /api/v1/runtimes/{name}.
func UpdateRuntime(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return updateMetadata(log, runtimeKind(s))
}

// DeleteRuntime handles DELETE /api/v1/runtimes/{name}: 204; the local runtime answers 409.
func DeleteRuntime(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return deleteMetadata(log, runtimeKind(s))
}

// ListRuntimeImages handles GET /api/v1/runtime-images: {"runtime-images": [...]}.
func ListRuntimeImages(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return listMetadata(log, imageKind(s))
}

// GetRuntimeImage handles GET /api/v1/runtime-images/{name}.
func GetRuntimeImage(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return getMetadata(log, imageKind(s))
}

// CreateRuntimeImage handles POST /api/v1/runtime-images.
func CreateRuntimeImage(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return createMetadata(log, imageKind(s))
}

// UpdateRuntimeImage handles PUT /api/v1/runtime-images/{name}.
func UpdateRuntimeImage(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return updateMetadata(log, imageKind(s))
}

// DeleteRuntimeImage handles DELETE /api/v1/runtime-images/{name}.
func DeleteRuntimeImage(log *slog.Logger, s *runs.RuntimeStore) http.Handler {
	return deleteMetadata(log, imageKind(s))
}
