package handlers

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/runs"
)

// Elyra's metadata service, backed by kfbridge's runtime store: the "runtimes" schemaspace (schema
// kfp) and "runtime-images" (schema runtime-image) are the same instances /api/v1/runtimes and
// /api/v1/runtime-images serve ("one store, two APIs"). Secrets are write-only: a read gives
// runs.SecretPlaceholder, and an update that sends the placeholder back keeps the stored value.
// The other schemaspaces Elyra's frontend may ask for (code-snippets, component-catalogs) are
// answered empty; creating instances in them is refused clearly.

// elyraSchemaspace describes one schemaspace kfbridge serves.
type elyraSchemaspace struct {
	name, id, displayName, description string
	// schemas are the schemaspace's schemas, by name.
	schemas func() map[string]map[string]any
}

// The schemaspace ids are Elyra's, so clients that address a schemaspace by id keep working.
var elyraSchemaspaces = []elyraSchemaspace{
	{name: runs.SchemaspaceRuntimes, id: "130b8e00-de7c-4b32-b553-b4a52824a3b5", displayName: "Runtimes",
		description: "Schemaspace for runtime configurations (kfbridge)", schemas: func() map[string]map[string]any {
			return map[string]map[string]any{runs.SchemaKFP: kfpSchema()}
		}},
	{name: runs.SchemaspaceRuntimeImages, id: "119c9740-d73f-48c6-a97a-599d3acaf41d", displayName: "Runtime Images",
		description: "Schemaspace for runtime images (kfbridge)", schemas: func() map[string]map[string]any {
			return map[string]map[string]any{runs.SchemaRuntimeImage: runtimeImageSchema()}
		}},
}

// elyraEmptySchemaspaces are Elyra schemaspaces kfbridge has no instances or schemas for.
var elyraEmptySchemaspaces = map[string]string{
	"code-snippets":      "code snippets are not kept by kfbridge",
	"component-catalogs": "custom components (component catalogs) are not supported by kfbridge",
}

func findSchemaspace(nameOrID string) (elyraSchemaspace, bool) {
	for _, s := range elyraSchemaspaces {
		if s.name == nameOrID || s.id == nameOrID {
			return s, true
		}
	}
	return elyraSchemaspace{}, false
}

func schemaspaceNotFound(name string) error {
	return fmt.Errorf("%w: schemaspace %q (kfbridge serves %s and %s)", runs.ErrNotFound, name, runs.SchemaspaceRuntimes, runs.SchemaspaceRuntimeImages)
}

// ElyraSchemaspaces handles GET /elyra/schemaspace.
func ElyraSchemaspaces() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for _, s := range elyraSchemaspaces {
			names = append(names, s.name)
		}
		encode(w, http.StatusOK, map[string]any{"schemaspaces": names})
	})
}

// ElyraSchemaspace handles GET /elyra/schemaspace/{schemaspace}.
func ElyraSchemaspace(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "schemaspace")
		s, ok := findSchemaspace(name)
		if !ok {
			ElyraError(log, w, r, schemaspaceNotFound(name))
			return
		}
		encode(w, http.StatusOK, map[string]any{"name": s.name, "id": s.id, "display_name": s.displayName, "description": s.description})
	})
}

// ElyraSchemas handles GET /elyra/schema/{schemaspace}: {"<schemaspace>": [schema…]}.
func ElyraSchemas(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "schemaspace")
		if _, ok := elyraEmptySchemaspaces[name]; ok {
			encode(w, http.StatusOK, map[string]any{name: []any{}})
			return
		}
		s, ok := findSchemaspace(name)
		if !ok {
			ElyraError(log, w, r, schemaspaceNotFound(name))
			return
		}
		list := []map[string]any{}
		for _, sc := range s.schemas() {
			list = append(list, sc)
		}
		encode(w, http.StatusOK, map[string]any{s.name: list})
	})
}

// ElyraSchema handles GET /elyra/schema/{schemaspace}/{schema}.
func ElyraSchema(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, schema := chi.URLParam(r, "schemaspace"), chi.URLParam(r, "schema")
		s, ok := findSchemaspace(name)
		if !ok {
			ElyraError(log, w, r, schemaspaceNotFound(name))
			return
		}
		sc, ok := s.schemas()[schema]
		if !ok {
			ElyraError(log, w, r, fmt.Errorf("%w: schema %q in schemaspace %s", runs.ErrNotFound, schema, s.name))
			return
		}
		encode(w, http.StatusOK, sc)
	})
}

// elyraMetadataKind picks the store's instance kind for a schemaspace in the request, answering the
// error itself when there is none.
func elyraMetadata(log *slog.Logger, store *runs.RuntimeStore, w http.ResponseWriter, r *http.Request,
	runtimes func(metadataKind[runs.RuntimeConfig]), images func(metadataKind[runs.RuntimeImage]), empty func(space string)) {
	name := chi.URLParam(r, "schemaspace")
	s, ok := findSchemaspace(name)
	switch {
	case ok && s.name == runs.SchemaspaceRuntimes:
		runtimes(runtimeKind(store))
	case ok && s.name == runs.SchemaspaceRuntimeImages:
		images(imageKind(store))
	default:
		if _, known := elyraEmptySchemaspaces[name]; known && empty != nil {
			empty(name)
			return
		}
		if why, known := elyraEmptySchemaspaces[name]; known {
			ElyraError(log, w, r, fmt.Errorf("%w: schemaspace %s: %s", runs.ErrNotFound, name, why))
			return
		}
		ElyraError(log, w, r, schemaspaceNotFound(name))
	}
}

// ElyraListMetadata handles GET /elyra/metadata/{schemaspace}: {"<schemaspace>": [instance…]}.
// The runtimes list holds the stored (Kubeflow Pipelines) configurations, as Elyra's does; the
// built-in local runtime is not an Elyra instance (Elyra implies local), but it can be read by name.
func ElyraListMetadata(log *slog.Logger, store *runs.RuntimeStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elyraMetadata(log, store, w, r,
			func(k metadataKind[runs.RuntimeConfig]) {
				items, err := k.list()
				if err != nil {
					log.Warn("skipping unreadable metadata instances", "schemaspace", k.space, "err", err)
				}
				out := []runs.RuntimeConfig{}
				for _, rc := range items {
					if rc.Name != runs.LocalRuntimeName {
						out = append(out, rc)
					}
				}
				encode(w, http.StatusOK, map[string]any{k.space: out})
			},
			func(k metadataKind[runs.RuntimeImage]) { elyraList(log, w, k) },
			func(space string) { encode(w, http.StatusOK, map[string]any{space: []any{}}) })
	})
}

func elyraList[T any](log *slog.Logger, w http.ResponseWriter, k metadataKind[T]) {
	items, err := k.list()
	if err != nil {
		log.Warn("skipping unreadable metadata instances", "schemaspace", k.space, "err", err)
	}
	if items == nil {
		items = []T{}
	}
	encode(w, http.StatusOK, map[string]any{k.space: items})
}

// ElyraGetMetadata handles GET /elyra/metadata/{schemaspace}/{name}.
func ElyraGetMetadata(log *slog.Logger, store *runs.RuntimeStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elyraMetadata(log, store, w, r,
			func(k metadataKind[runs.RuntimeConfig]) { elyraGet(log, w, r, k) },
			func(k metadataKind[runs.RuntimeImage]) { elyraGet(log, w, r, k) }, nil)
	})
}

func elyraGet[T any](log *slog.Logger, w http.ResponseWriter, r *http.Request, k metadataKind[T]) {
	v, err := k.get(chi.URLParam(r, "name"))
	if err != nil {
		ElyraError(log, w, r, err)
		return
	}
	encode(w, http.StatusOK, v)
}

// ElyraCreateMetadata handles POST /elyra/metadata/{schemaspace}: 201 with the instance and its
// Location; 409 if the name is taken; 400 naming every invalid field.
func ElyraCreateMetadata(log *slog.Logger, store *runs.RuntimeStore, paths ProxyPaths) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elyraMetadata(log, store, w, r,
			func(k metadataKind[runs.RuntimeConfig]) { elyraCreate(log, w, r, k, paths) },
			func(k metadataKind[runs.RuntimeImage]) { elyraCreate(log, w, r, k, paths) }, nil)
	})
}

func elyraCreate[T any](log *slog.Logger, w http.ResponseWriter, r *http.Request, k metadataKind[T], paths ProxyPaths) {
	in, err := decode[T](w, r)
	if err != nil {
		ElyraError(log, w, r, err)
		return
	}
	v, err := k.create(in)
	if err != nil {
		ElyraError(log, w, r, err)
		return
	}
	w.Header().Set("Location", paths.ElyraBase(r)+"/metadata/"+k.space+"/"+url.PathEscape(k.name(v)))
	encode(w, http.StatusCreated, v)
}

// ElyraUpdateMetadata handles PUT /elyra/metadata/{schemaspace}/{name}. Secrets sent as the
// placeholder (or left out) keep their stored values.
func ElyraUpdateMetadata(log *slog.Logger, store *runs.RuntimeStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elyraMetadata(log, store, w, r,
			func(k metadataKind[runs.RuntimeConfig]) { elyraUpdate(log, w, r, k) },
			func(k metadataKind[runs.RuntimeImage]) { elyraUpdate(log, w, r, k) }, nil)
	})
}

func elyraUpdate[T any](log *slog.Logger, w http.ResponseWriter, r *http.Request, k metadataKind[T]) {
	in, err := decode[T](w, r)
	if err != nil {
		ElyraError(log, w, r, err)
		return
	}
	v, err := k.update(chi.URLParam(r, "name"), in)
	if err != nil {
		ElyraError(log, w, r, err)
		return
	}
	encode(w, http.StatusOK, v)
}

// ElyraDeleteMetadata handles DELETE /elyra/metadata/{schemaspace}/{name}: 204; the built-in
// local runtime answers 403 (not permitted), as Elyra does for instances it may not delete.
func ElyraDeleteMetadata(log *slog.Logger, store *runs.RuntimeStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		del := func(remove func(string) error) {
			if err := remove(chi.URLParam(r, "name")); err != nil {
				ElyraError(log, w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
		elyraMetadata(log, store, w, r,
			func(k metadataKind[runs.RuntimeConfig]) { del(k.remove) },
			func(k metadataKind[runs.RuntimeImage]) { del(k.remove) }, nil)
	})
}

// --- schemas ---

// Schemas are kfbridge's own descriptions of what its store accepts, in the shape of Elyra's
// metadata schemas (meta-schema: schemaspace, schemaspace_id, name, properties with schema_name,
// display_name and metadata), so Elyra's runtime forms render them. Field names are Elyra's;
// kfbridge's additions (api_version, cos_object_prefix, runner_image, ca_bundle_path) are marked.

func prop(typ, title, desc, category string) map[string]any {
	p := map[string]any{"type": typ, "title": title, "description": desc}
	if category != "" {
		p["uihints"] = map[string]any{"category": category}
	}
	return p
}

func secretProp(title, desc, category string) map[string]any {
	p := prop("string", title, desc+" Write-only: reads show "+runs.SecretPlaceholder+"; saving "+runs.SecretPlaceholder+" keeps the stored value.", category)
	p["uihints"] = map[string]any{"category": category, "ui:field": "@elyra/metadata-extension:plugin.password"}
	return p
}

func tagsProp(what string) map[string]any {
	return map[string]any{"title": "Tags", "description": "Tags for categorizing " + what, "type": "array", "uniqueItems": true,
		"items":   map[string]any{"minLength": 1, "pattern": `^[^ \t]+([ \t]+[^ \t]+)*$`},
		"uihints": map[string]any{"ui:field": "@elyra/metadata-extension:plugin.tags"}}
}

func kfpSchema() map[string]any {
	const kf, cos, kb = "Kubeflow Pipelines", "Cloud Object Storage", "kfbridge"
	auth := []string{string(kfp.AuthNone), string(kfp.AuthServiceAccountToken), string(kfp.AuthBearerToken),
		string(kfp.AuthDexStaticPasswords), string(kfp.AuthDexLDAP), string(kfp.AuthSessionCookie)}
	m := map[string]any{
		"runtime_type": map[string]any{"title": "Runtime Type", "type": "string", "const": runs.RuntimeTypeKFP, "uihints": map[string]any{"hidden": true}},
		"description":  prop("string", "Description", "Description of this Kubeflow Pipelines configuration", ""),
		"api_endpoint": withPlaceholder(withFormat(prop("string", "Kubeflow Pipelines API Endpoint", "The Kubeflow Pipelines API endpoint", kf), "uri"), "https://your-kubeflow-service:port/pipeline"),
		"public_api_endpoint": withFormat(prop("string", "Public Kubeflow Pipelines API Endpoint",
			"The public Kubeflow Pipelines API endpoint, for links to runs", kf), "uri"),
		"user_namespace": withPattern(prop("string", "Kubeflow Pipelines User Namespace", "The Kubeflow Pipelines user namespace used to create experiments", kf),
			"^[a-z0-9][-a-z0-9]*[a-z0-9]$", 63),
		"engine":    withEnum(prop("string", "Kubeflow Pipelines engine", "The Kubeflow Pipelines engine in use", kf), []string{runs.EngineArgo}, runs.EngineArgo),
		"auth_type": withEnum(prop("string", "Authentication Type", "How kfbridge authenticates with Kubeflow Pipelines", kf), auth, string(kfp.AuthNone)),
		"api_username": prop("string", "Kubeflow Pipelines API Endpoint Username",
			"Username for DEX_STATIC_PASSWORDS and DEX_LDAP; the cookie name for EXISTING_SESSION_COOKIE", kf),
		"api_password": secretProp("Kubeflow Pipelines API Endpoint Password Or Token",
			"Password (Dex), bearer token (EXISTING_BEARER_TOKEN) or cookie value (EXISTING_SESSION_COOKIE).", kf),
		"api_version": withEnum(prop("string", "KFP API version (kfbridge)", "v1beta1 (KFP 1.x), v2beta1 (KFP 2.x) or auto-detect", kb),
			[]string{kfp.Auto, kfp.V1Beta1, kfp.V2Beta1}, kfp.Auto),
		"ca_bundle_path": prop("string", "CA bundle path (kfbridge)", "Absolute path of a PEM CA bundle for the KFP endpoint", kb),
		"cos_endpoint":   withPlaceholder(withFormat(prop("string", "Cloud Object Storage Endpoint", "The Cloud Object Storage endpoint", cos), "uri"), "https://your-cos-service:port"),
		"public_cos_endpoint": withFormat(prop("string", "Public Cloud Object Storage Endpoint",
			"The public Cloud Object Storage endpoint", cos), "uri"),
		"cos_bucket": withPattern(prop("string", "Cloud Object Storage Bucket Name", "The Cloud Object Storage bucket name", cos),
			"^[a-z0-9][a-z0-9-.]*[a-z0-9]$", 222),
		"cos_auth_type": withEnum(prop("string", "Cloud Object Storage Authentication Type", "How pods authenticate with Cloud Object Storage", cos),
			[]string{runs.COSAuthIRSA, runs.COSAuthKubernetesSecret, runs.COSAuthUserCredentials}, runs.COSAuthUserCredentials),
		"cos_secret": prop("string", "Cloud Object Storage Credentials Secret",
			"Kubernetes Secret in the user namespace holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Required for KUBERNETES_SECRET.", cos),
		"cos_username": prop("string", "Cloud Object Storage Username", "Required for USER_CREDENTIALS and KUBERNETES_SECRET.", cos),
		"cos_password": withMin(secretProp("Cloud Object Storage Password", "Required for USER_CREDENTIALS and KUBERNETES_SECRET.", cos), 8),
		"cos_object_prefix": prop("string", "Object Storage Path Prefix (kfbridge)",
			"Key prefix under which runs and archives are stored", kb),
		"runner_image": prop("string", "Runner image (kfbridge)", "Image with kfbridge-step for the pods; default: the server's", kb),
		"tags":         tagsProp("Kubeflow pipelines"),
	}
	return elyraSchema(runs.SchemaspaceRuntimes, "130b8e00-de7c-4b32-b553-b4a52824a3b5", runs.SchemaKFP, "Kubeflow Pipelines",
		"Kubeflow Pipelines runtimes", "elyra:runtimes", m, []string{"api_endpoint", "cos_auth_type", "cos_endpoint", "cos_bucket"},
		map[string]any{"runtime_type": runs.RuntimeTypeKFP})
}

func runtimeImageSchema() map[string]any {
	m := map[string]any{
		"description": prop("string", "Description", "The description of this Runtime Image instance", ""),
		"tags":        tagsProp("runtime images"),
		"image_name":  withPlaceholder(withMin(prop("string", "Image Name", "The image name (including optional tag)", "Source"), 1), "registry/owner/image:tag"),
		"pull_policy": withEnum(prop("string", "Image Pull Policy", "The pull policy to use when selecting this image", "Source"),
			[]string{"Always", "IfNotPresent", "Never"}, ""),
		"pull_secret": withPattern(prop("string", "Image Pull Secret",
			"Kubernetes secret name containing the container registry credentials, if anonymous pull access is forbidden.", "Source"),
			"^[a-z0-9][a-z0-9-.]*[a-z0-9]$", 253),
	}
	return elyraSchema(runs.SchemaspaceRuntimeImages, "119c9740-d73f-48c6-a97a-599d3acaf41d", runs.SchemaRuntimeImage, "Runtime Image",
		"Runtime Images", "elyra:container", m, []string{"image_name"}, nil)
}

func elyraSchema(space, spaceID, name, title, uiTitle, icon string, metadata map[string]any, required []string, extra map[string]any) map[string]any {
	s := map[string]any{
		"$schema":     "http://json-schema.org/draft-07/schema#",
		"title":       title,
		"name":        name,
		"schemaspace": space, "schemaspace_id": spaceID,
		"uihints": map[string]any{"title": uiTitle, "icon": icon},
		"properties": map[string]any{
			"schema_name":  map[string]any{"title": "Schema Name", "type": "string", "const": name},
			"display_name": map[string]any{"title": "Display Name", "type": "string", "minLength": 1},
			"metadata":     map[string]any{"description": "Additional data specific to this metadata", "type": "object", "properties": metadata, "required": required},
		},
		"required": []string{"schema_name", "display_name", "metadata"},
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

func withFormat(p map[string]any, f string) map[string]any { p["format"] = f; return p }
func withMin(p map[string]any, n int) map[string]any       { p["minLength"] = n; return p }

func withPlaceholder(p map[string]any, ph string) map[string]any {
	ui, _ := p["uihints"].(map[string]any)
	if ui == nil {
		ui = map[string]any{}
	}
	ui["ui:placeholder"] = ph
	p["uihints"] = ui
	return p
}

func withPattern(p map[string]any, pattern string, maxLen int) map[string]any {
	p["pattern"], p["maxLength"] = pattern, maxLen
	return p
}

func withEnum(p map[string]any, enum []string, def string) map[string]any {
	p["enum"] = enum
	if def != "" {
		p["default"] = def
	}
	return p
}
