package handlers

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// kfbridge's Elyra palette holds only Elyra's three generic components (notebook, Python script,
// R script), for the local and the Kubeflow Pipelines runtime types. Custom components (component
// catalogs) are not supported: their ids answer 404 and a pipeline using them fails validation.

// elyraRuntimeType maps the {runtime_type} path segment to a runtime type kfbridge serves. Elyra
// also accepts its deprecated short processor names.
func elyraRuntimeType(s string) (string, error) {
	switch strings.ToUpper(s) {
	case runs.RuntimeTypeKFP, "KFP":
		return runs.RuntimeTypeKFP, nil
	case runs.RuntimeTypeLocal:
		return runs.RuntimeTypeLocal, nil
	case pipeline.RuntimeAirflow, "AIRFLOW":
		return "", fmt.Errorf("%w: runtime type %s is not supported by kfbridge (Kubeflow Pipelines and local only)", errBadRequest, s)
	}
	return "", fmt.Errorf("%w: unknown runtime type %q: want %s or %s", errBadRequest, s, runs.RuntimeTypeKFP, runs.RuntimeTypeLocal)
}

// svgIcon makes a data: URL of a small SVG, so icons need no extra route (Elyra's own static icons
// go away with its server extension).
func svgIcon(color, text string) string {
	svg := `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="` + color +
		`"/><text x="8" y="11.5" font-size="7" font-family="sans-serif" text-anchor="middle" fill="#fff">` + text + `</text></svg>`
	return "data:image/svg+xml;utf8," + url.PathEscape(svg)
}

// genericComponent is one of Elyra's generic components.
type genericComponent struct {
	id, op, label, description, ext, icon string
}

var genericComponents = []genericComponent{
	{"notebook", pipeline.OpNotebook, "Notebook", "Run notebook file", ".ipynb", svgIcon("#f37726", "nb")},
	{"python-script", pipeline.OpPython, "Python Script", "Run Python script", ".py", svgIcon("#3572a5", "py")},
	{"r-script", pipeline.OpR, "R Script", "Run R script", ".r", svgIcon("#198ce7", "R")},
}

func findGeneric(id string) (genericComponent, bool) {
	for _, g := range genericComponents {
		if g.id == id || g.op == id {
			return g, true
		}
	}
	return genericComponent{}, false
}

// ElyraRuntimeTypes handles GET /elyra/pipeline/runtimes/types.
func ElyraRuntimeTypes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]any{"runtime_types": []map[string]any{
			{"id": runs.RuntimeTypeLocal, "display_name": "Local", "icon": svgIcon("#6f6f6f", "L"),
				"export_file_types": []map[string]string{}, "runtime_enabled": true},
			{"id": runs.RuntimeTypeKFP, "display_name": "Kubeflow Pipelines", "icon": svgIcon("#4279f4", "KF"),
				"export_file_types": []map[string]string{{"id": "yaml", "display_name": "KFP static configuration file (YAML formatted)"}},
				"runtime_enabled":   true},
		}})
	})
}

func port(id, label string) map[string]any {
	return map[string]any{"id": id, "app_data": map[string]any{"ui_data": map[string]any{
		"cardinality": map[string]int{"min": 0, "max": -1}, "label": label}}}
}

// ElyraPalette handles GET /elyra/pipeline/components/{runtime_type}: the canvas palette (version
// 3.0: categories of node_types) with the generic components.
func ElyraPalette(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := elyraRuntimeType(chi.URLParam(r, "runtime_type")); err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		images := imageNames(c)
		var nodes []map[string]any
		for _, g := range genericComponents {
			nodes = append(nodes, map[string]any{
				"op": g.op, "id": g.id, "type": "execution_node", "label": g.label, "description": g.description, "image": g.icon,
				"inputs": []any{port("inPort", "Input Port")}, "outputs": []any{port("outPort", "Output Port")},
				"parameters": map[string]any{},
				"app_data": map[string]any{
					"extensions": []string{g.ext}, "parameter_refs": map[string]string{"filehandler": "filename"}, "image": g.icon,
					// The node's property schema inline, as Elyra's palette carries it.
					"properties": nodeSchema(g, images),
					"ui_data":    map[string]any{"label": g.label, "description": g.description, "image": g.icon, "x_pos": 0, "y_pos": 0},
				},
			})
		}
		encode(w, http.StatusOK, map[string]any{"version": "3.0", "categories": []map[string]any{{
			"id": "Elyra", "label": "Elyra", "image": "", "description": "Generic components: run a notebook or script",
			"node_types": nodes,
		}}})
	})
}

// genericComponentID returns the generic component a {component_id} names, or a 404 error; custom
// components ("<catalog>:<hash>") are answered as unsupported.
func genericComponentID(r *http.Request) (genericComponent, error) {
	if _, err := elyraRuntimeType(chi.URLParam(r, "runtime_type")); err != nil {
		return genericComponent{}, err
	}
	id := chi.URLParam(r, "component_id")
	if g, ok := findGeneric(id); ok {
		return g, nil
	}
	if strings.Contains(id, ":") {
		return genericComponent{}, fmt.Errorf("%w: component %q: custom components (component catalogs) are not supported by kfbridge; use the generic notebook, Python and R components", runs.ErrNotFound, id)
	}
	return genericComponent{}, fmt.Errorf("%w: component %q", runs.ErrNotFound, id)
}

// ElyraComponent handles GET /elyra/pipeline/components/{runtime_type}/{component_id}: the
// component definition {content, mimeType}. A generic component's definition is its property
// schema.
func ElyraComponent(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := genericComponentID(r)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		def, _ := json.MarshalIndent(nodeSchema(g, imageNames(c)), "", "  ")
		encode(w, http.StatusOK, map[string]string{"content": string(def), "mimeType": "application/json"})
	})
}

// ElyraComponentProperties handles GET /elyra/pipeline/components/{runtime_type}/{component_id}/properties.
func ElyraComponentProperties(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := genericComponentID(r)
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		encode(w, http.StatusOK, nodeSchema(g, imageNames(c)))
	})
}

// imageNames lists the configured runtime images, for the runtime_image choices.
func imageNames(c ElyraConfig) []string {
	if c.Runtimes == nil {
		return nil
	}
	ims, err := c.Runtimes.ListImages()
	if err != nil {
		c.Log.Warn("skipping unreadable runtime images", "err", err)
	}
	var out []string
	for _, im := range ims {
		out = append(out, im.Metadata.ImageName)
	}
	return out
}

func str(title, desc string) map[string]any {
	return map[string]any{"type": "string", "title": title, "description": desc}
}

func strList(title, desc string) map[string]any {
	return map[string]any{"type": "array", "title": title, "description": desc, "items": map[string]any{"type": "string"}, "uniqueItems": true}
}

func objList(title, desc string, required []string, props map[string]any) map[string]any {
	return map[string]any{"type": "array", "title": title, "description": desc,
		"items": map[string]any{"type": "object", "properties": props, "required": required}}
}

func intProp(title, desc string) map[string]any {
	return map[string]any{"type": "integer", "title": title, "description": desc, "minimum": 0}
}

// elyraListProperties are the Elyra-owned list properties of generic nodes, also allowed as
// pipeline defaults.
func elyraListProperties() map[string]any {
	return map[string]any{
		"env_vars": objList("Environment Variables", "Environment variables to be set on the execution environment.",
			[]string{"env_var"}, map[string]any{"env_var": str("Environment Variable", ""), "value": str("Value", "")}),
		"kubernetes_secrets": objList("Kubernetes Secrets", "Kubernetes secrets to expose as environment variables (Kubeflow Pipelines only).",
			[]string{"env_var", "name", "key"}, map[string]any{"env_var": str("Environment Variable", ""), "name": str("Secret Name", ""), "key": str("Secret Key", "")}),
		"mounted_volumes": objList("Data Volumes", "Persistent volume claims to mount (Kubeflow Pipelines only).",
			[]string{"path", "pvc_name"}, map[string]any{"path": str("Mount Path", ""), "pvc_name": str("Persistent Volume Claim Name", ""),
				"sub_path": str("Sub Path", ""), "read_only": map[string]any{"type": "boolean", "title": "Mount Read-Only"}}),
		"kubernetes_tolerations": objList("Kubernetes Tolerations", "Pod tolerations (Kubeflow Pipelines only).",
			[]string{"operator"}, map[string]any{"key": str("Key", ""), "operator": map[string]any{"type": "string", "enum": []string{"Equal", "Exists"}},
				"value": str("Value", ""), "effect": map[string]any{"type": "string", "enum": []string{"", "NoExecute", "NoSchedule", "PreferNoSchedule"}}}),
		"kubernetes_pod_annotations": objList("Kubernetes Pod Annotations", "Pod annotations (Kubeflow Pipelines only).",
			[]string{"key"}, map[string]any{"key": str("Key", ""), "value": str("Value", "")}),
		"kubernetes_pod_labels": objList("Kubernetes Pod Labels", "Pod labels (Kubeflow Pipelines only).",
			[]string{"key"}, map[string]any{"key": str("Key", ""), "value": str("Value", "")}),
		"kubernetes_shared_mem_size": map[string]any{"type": "object", "title": "Shared Memory Size",
			"properties": map[string]any{"size": map[string]any{"type": "number", "minimum": 0, "title": "Memory Size (GB)"},
				"units": map[string]any{"type": "string", "enum": []string{"G"}, "default": "G"}}},
	}
}

// nodeSchema is the JSON schema of a generic node's properties: label and component_parameters.
func nodeSchema(g genericComponent, images []string) map[string]any {
	image := str("Runtime Image", "Container image used as execution environment.")
	if len(images) > 0 {
		image["enum"] = images
	}
	params := map[string]any{
		"filename": map[string]any{"type": "string", "title": "Filename", "description": "The path to the " + strings.ToLower(g.label) + " file, relative to the workspace.",
			"pattern": `(?i)\` + g.ext + "$", "uihints": map[string]any{"ui:widget": "file", "extensions": []string{g.ext}}},
		"runtime_image":          image,
		"dependencies":           strList("File Dependencies", "Local files the file needs, relative to its directory (globs allowed)."),
		"include_subdirectories": map[string]any{"type": "boolean", "title": "Include Subdirectories", "default": false},
		"outputs":                strList("Output Files", "Files the file produces, made available to all downstream nodes."),
		"cpu":                    intProp("CPU", "CPU request (Kubeflow Pipelines only)."),
		"cpu_limit":              intProp("CPU limit", "CPU limit (Kubeflow Pipelines only)."),
		"memory":                 intProp("RAM (GB)", "Memory request in GB (Kubeflow Pipelines only)."),
		"memory_limit":           intProp("RAM limit (GB)", "Memory limit in GB (Kubeflow Pipelines only)."),
		"gpu":                    intProp("GPU", "Number of GPUs (Kubeflow Pipelines only)."),
		"gpu_vendor":             map[string]any{"type": "string", "title": "GPU Vendor", "default": "nvidia.com/gpu"},
		"pipeline_parameters":    strList("Pipeline Parameters", "Pipeline parameters passed to this node as environment variables (Kubeflow Pipelines only)."),
	}
	for k, v := range elyraListProperties() {
		params[k] = v
	}
	return map[string]any{
		"$schema": "http://json-schema.org/draft-07/schema#",
		"title":   g.label, "description": g.description, "type": "object",
		"properties": map[string]any{
			"label": str("Label", "A custom label for the node."),
			"component_parameters": map[string]any{"type": "object", "properties": params,
				"required": []string{"filename", "runtime_image"}},
		},
		"required": []string{"component_parameters"},
	}
}

// ElyraPipelineProperties handles GET /elyra/pipeline/{runtime_type}/properties: the schema of
// the pipeline properties and pipeline defaults.
func ElyraPipelineProperties(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, err := elyraRuntimeType(chi.URLParam(r, "runtime_type"))
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		image := str("Runtime Image", "Default container image of the generic nodes.")
		if ims := imageNames(c); len(ims) > 0 {
			image["enum"] = ims
		}
		defaults := map[string]any{
			"runtime_image":     image,
			"cos_object_prefix": str("Object Storage Path Prefix", "Object storage path under which the run directory is created."),
		}
		if rt == runs.RuntimeTypeKFP {
			for k, v := range elyraListProperties() {
				defaults[k] = v
			}
			defaults["disable_node_caching"] = map[string]any{"type": "string", "title": "Disable node caching", "enum": []string{"", "True", "False"}}
		} else {
			defaults["env_vars"] = elyraListProperties()["env_vars"]
		}
		encode(w, http.StatusOK, map[string]any{
			"$schema": "http://json-schema.org/draft-07/schema#",
			"title":   "Pipeline properties", "type": "object",
			"properties": map[string]any{
				"name":              map[string]any{"type": "string", "title": "Pipeline Name", "uihints": map[string]any{"ui:readonly": true}},
				"runtime":           map[string]any{"type": "string", "title": "Pipeline Runtime", "uihints": map[string]any{"ui:readonly": true}},
				"description":       str("Pipeline Description", "Pipeline description."),
				"pipeline_defaults": map[string]any{"type": "object", "title": "Pipeline Defaults", "properties": defaults},
			},
		})
	})
}

// ElyraPipelineParameters handles GET /elyra/pipeline/{runtime_type}/parameters: the schema of
// pipeline parameters on Kubeflow Pipelines; the local runtime has none (405, as Elyra answers a
// runtime without parameter support).
func ElyraPipelineParameters(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, err := elyraRuntimeType(chi.URLParam(r, "runtime_type"))
		if err != nil {
			ElyraError(c.Log, w, r, err)
			return
		}
		if rt != runs.RuntimeTypeKFP {
			encode(w, http.StatusMethodNotAllowed, map[string]string{"message": "runtime type " + rt + " does not support pipeline parameters"})
			return
		}
		valueTypes := []string{"String", "Integer", "Float", "Bool"}
		encode(w, http.StatusOK, map[string]any{
			"$schema": "http://json-schema.org/draft-07/schema#",
			"title":   "Pipeline parameters", "type": "array",
			"items": map[string]any{"type": "object", "required": []string{"name"},
				"properties": map[string]any{
					"name":        map[string]any{"type": "string", "title": "Parameter Name", "pattern": `^[a-zA-Z_][a-zA-Z0-9_]*$`},
					"description": str("Description", ""),
					"default_value": map[string]any{"type": "object", "title": "Default Value", "required": []string{"type"},
						"properties": map[string]any{"type": map[string]any{"type": "string", "enum": valueTypes},
							"value": map[string]any{"type": []string{"string", "integer", "number", "boolean"}}}},
					"required": map[string]any{"type": "boolean", "title": "Required", "default": false},
				}},
		})
	})
}

// Environment variables a file reads: Python's os.getenv / os.environ.get / os.environ[...] and
// R's Sys.getenv, with a literal default when there is one.
var (
	pyEnvCallRE  = regexp.MustCompile(`os\.(?:getenv|environ\.get)\(\s*(?:key\s*=\s*)?["']([^"'\\]+)["']\s*(?:,\s*(?:default\s*=\s*)?(?:["']([^"'\\]*)["'])?)?`)
	pyEnvIndexRE = regexp.MustCompile(`os\.environ\[\s*["']([^"'\\]+)["']\s*\]`)
	rEnvRE       = regexp.MustCompile(`Sys\.getenv\(\s*(?:x\s*=\s*)?["']([^"'\\]+)["']\s*(?:,\s*(?:unset\s*=\s*)?(?:["']([^"'\\]*)["'])?)?`)
)

// maxScanBytes bounds the file ElyraContentsProperties reads.
const maxScanBytes = 16 << 20

// ElyraContentsProperties handles GET /elyra/contents/properties/{path}: {env_vars:{NAME: default},
// inputs:[], outputs:[]}. A variable without a literal default maps to "" (Elyra answers null,
// which its own spec does not allow).
func ElyraContentsProperties(c ElyraConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel := chi.URLParam(r, "*")
		if u, err := url.PathUnescape(rel); err == nil {
			rel = u
		}
		abs, err := pipeline.Confine(c.Workspace, rel)
		if err != nil {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: path %q: %v", errBadRequest, rel, err))
			return
		}
		fi, err := os.Stat(abs)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w: file %s", runs.ErrNotFound, rel)
			}
			ElyraError(c.Log, w, r, err)
			return
		}
		if fi.IsDir() {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: %s is a directory", errBadRequest, rel))
			return
		}
		if fi.Size() > maxScanBytes {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: %s is larger than %d MiB", errBadRequest, rel, maxScanBytes>>20))
			return
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			ElyraError(c.Log, w, r, fmt.Errorf("contents properties: %w", err))
			return
		}
		vars, err := scanEnvVars(path.Ext(strings.ToLower(rel)), data)
		if err != nil {
			ElyraError(c.Log, w, r, fmt.Errorf("%w: %s: %v", errBadRequest, rel, err))
			return
		}
		encode(w, http.StatusOK, map[string]any{"env_vars": vars, "inputs": []string{}, "outputs": []string{}})
	})
}

// scanEnvVars finds the environment variables a notebook's code cells or a script reads.
func scanEnvVars(ext string, data []byte) (map[string]string, error) {
	vars := map[string]string{}
	var sources []string
	lang := "python"
	switch ext {
	case ".ipynb":
		var nb struct {
			Metadata struct {
				KernelSpec struct {
					Language string `json:"language"`
				} `json:"kernelspec"`
				LanguageInfo struct {
					Name string `json:"name"`
				} `json:"language_info"`
			} `json:"metadata"`
			Cells []struct {
				CellType string          `json:"cell_type"`
				Source   json.RawMessage `json:"source"`
			} `json:"cells"`
		}
		if err := json.Unmarshal(data, &nb); err != nil {
			return nil, fmt.Errorf("not a notebook: %v", err)
		}
		if l := strings.ToLower(nb.Metadata.KernelSpec.Language + nb.Metadata.LanguageInfo.Name); l == "r" || l == "rr" {
			lang = "r"
		}
		for _, cell := range nb.Cells {
			if cell.CellType != "code" {
				continue
			}
			var s string
			var lines []string
			if json.Unmarshal(cell.Source, &s) != nil && json.Unmarshal(cell.Source, &lines) == nil {
				s = strings.Join(lines, "")
			}
			sources = append(sources, s)
		}
	case ".py":
		sources = []string{string(data)}
	case ".r":
		lang, sources = "r", []string{string(data)}
	default:
		return nil, fmt.Errorf("unsupported file type %q: want .ipynb, .py or .r", ext)
	}
	for _, src := range sources {
		sc := bufio.NewScanner(strings.NewReader(src))
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := stripComment(sc.Text())
			add := func(name, def string) {
				if old, ok := vars[name]; !ok || old == "" {
					vars[name] = def
				}
			}
			if lang == "r" {
				for _, m := range rEnvRE.FindAllStringSubmatch(line, -1) {
					add(m[1], m[2])
				}
				continue
			}
			for _, m := range pyEnvCallRE.FindAllStringSubmatch(line, -1) {
				add(m[1], m[2])
			}
			for _, m := range pyEnvIndexRE.FindAllStringSubmatch(line, -1) {
				add(m[1], "")
			}
		}
	}
	return vars, nil
}

// stripComment cuts a line at a '#' outside string literals (a comment in Python and R).
func stripComment(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case quote != 0 && ch == '\\':
			i++ // the escaped character cannot end the literal
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '"' || ch == '\''):
			quote = ch
		case quote == 0 && ch == '#':
			return line[:i]
		}
	}
	return line
}
