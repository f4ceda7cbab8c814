package kfptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type handlerFunc func(c *reqCtx) (any, *apiError)

// maxUpload is KFP's cap on the uploaded file (32 MiB).
const maxUpload = 32 << 20

func (s *Server) handlers() map[string]handlerFunc {
	return map[string]handlerFunc{
		"v1beta1 GetHealthz":            s.healthz,
		"v1beta1 UploadPipeline":        s.uploadPipeline,
		"v1beta1 UploadPipelineVersion": s.uploadVersion,
		"v1beta1 ListPipelines":         s.listPipelines,
		"v1beta1 GetPipeline":           s.getPipeline,
		"v1beta1 ListPipelineVersions":  s.listVersionsV1,
		"v1beta1 CreateExperiment":      s.createExperimentV1,
		"v1beta1 ListExperiment":        s.listExperiments,
		"v1beta1 GetExperiment":         s.getExperiment,
		"v1beta1 CreateRun":             s.createRunV1,
		"v1beta1 GetRun":                s.getRun,
		"v1beta1 ListRuns":              s.listRuns,
		"v1beta1 TerminateRun":          s.terminateRun,

		"v2beta1 HealthzService_GetHealthz":            s.healthz,
		"v2beta1 UploadPipeline":                       s.uploadPipeline,
		"v2beta1 UploadPipelineVersion":                s.uploadVersion,
		"v2beta1 PipelineService_ListPipelines":        s.listPipelines,
		"v2beta1 PipelineService_GetPipeline":          s.getPipeline,
		"v2beta1 PipelineService_GetPipelineByName":    s.getPipelineByName,
		"v2beta1 PipelineService_ListPipelineVersions": s.listVersionsV2,
		"v2beta1 ExperimentService_CreateExperiment":   s.createExperimentV2,
		"v2beta1 ExperimentService_ListExperiments":    s.listExperiments,
		"v2beta1 ExperimentService_GetExperiment":      s.getExperiment,
		"v2beta1 RunService_CreateRun":                 s.createRunV2,
		"v2beta1 RunService_GetRun":                    s.getRun,
		"v2beta1 RunService_ListRuns":                  s.listRuns,
		"v2beta1 RunService_TerminateRun":              s.terminateRun,
		"v2beta1 PipelineService_GetPipelineVersion":   s.getVersionV2,
	}
}

func (s *Server) healthz(c *reqCtx) (any, *apiError) {
	if c.version == "v1beta1" {
		return map[string]any{"multi_user": s.opts.MultiUser}, nil
	}
	return map[string]any{"multi_user": s.opts.MultiUser, "pipeline_store": "database"}, nil
}

// render answers x in the request's API version: v1 renders it for v1beta1, v2 for v2beta1.
func render[T any](c *reqCtx, x T, v1, v2 func(T) map[string]any) map[string]any {
	if c.version == "v1beta1" {
		return v1(x)
	}
	return v2(x)
}

// decodeBody decodes a JSON request body into a T; malformed JSON is KFP's 400.
func decodeBody[T any](c *reqCtx) (T, *apiError) {
	var req T
	if err := json.Unmarshal(c.body, &req); err != nil {
		return req, errf(http.StatusBadRequest, "Invalid input error: %v", err)
	}
	return req, nil
}

// ---- pipelines ----

func (s *Server) readUpload(c *reqCtx) (filename string, content []byte, aerr *apiError) {
	bad := func(format string, args ...any) *apiError {
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...), bare: true}
	}
	_, params, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return "", nil, bad("Failed to read pipeline from file: request is not multipart")
	}
	mr := multipart.NewReader(bytes.NewReader(c.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return "", nil, bad("Failed to read pipeline from file: http: no such file (missing form field uploadfile)")
		}
		if err != nil {
			return "", nil, bad("Failed to read pipeline from file: %v", err)
		}
		if p.FormName() != "uploadfile" {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p, maxUpload+1))
		if err != nil {
			return "", nil, bad("Failed to read pipeline from file: %v", err)
		}
		if len(data) > maxUpload {
			return "", nil, bad("File size too large. Maximum supported size: 32MB")
		}
		return p.FileName(), data, nil
	}
}

func (s *Server) parseUploadFile(filename string, data []byte) (*template, *apiError) {
	low := strings.ToLower(filename)
	if !strings.HasSuffix(low, ".yaml") && !strings.HasSuffix(low, ".yml") && !strings.HasSuffix(low, ".json") {
		return nil, &apiError{status: http.StatusBadRequest, bare: true, msg: "Unexpected pipeline file format. Support .zip, .tar.gz or YAML."}
	}
	t, err := parseTemplate(data)
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, bare: true, msg: "Failed to create a pipeline due to template parse failure: " + err.Error()}
	}
	return t, nil
}

// dupError is KFP's answer to a taken name: 500 on 1.x, 409 on 2.x.
func dupError(version, what, name string) *apiError {
	msg := fmt.Sprintf("Failed to create a %s: The name %s already exist. Please specify a new name.", what, name)
	if version == "v1beta1" {
		return &apiError{status: http.StatusInternalServerError, bare: true, msg: msg}
	}
	return &apiError{status: http.StatusConflict, bare: true, msg: msg}
}

func (s *Server) uploadPipeline(c *reqCtx) (any, *apiError) {
	filename, data, aerr := s.readUpload(c)
	if aerr != nil {
		return nil, aerr
	}
	name := c.q.Get("name")
	if name == "" {
		name = filename
	}
	if len(name) > 100 {
		return nil, &apiError{status: http.StatusBadRequest, bare: true, msg: "pipeline name is longer than 100 characters"}
	}
	ns := c.q.Get("namespace")
	if ns != "" && !s.opts.MultiUser {
		ns = ""
	}
	t, aerr := s.parseUploadFile(filename, data)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pipelines {
		if p.name == name && p.namespace == ns {
			return nil, dupError(c.version, "pipeline", name)
		}
	}
	now := time.Now().UTC()
	p := &fakePipeline{id: newID(), name: name, displayName: firstNonEmpty(c.q.Get("display_name"), name), description: c.q.Get("description"), namespace: ns, created: now}
	v := &fakeVersion{id: newID(), pipelineID: p.id, name: name, displayName: p.displayName, description: p.description, created: now, tmpl: t}
	s.pipelines = append(s.pipelines, p)
	s.versions = append(s.versions, v)
	return render(c, p, s.pipelineV1, pipelineV2), nil
}

func (s *Server) uploadVersion(c *reqCtx) (any, *apiError) {
	filename, data, aerr := s.readUpload(c)
	if aerr != nil {
		return nil, aerr
	}
	pid := c.q.Get("pipelineid")
	if pid == "" {
		return nil, &apiError{status: http.StatusBadRequest, bare: true, msg: "Failed to create a pipeline version: pipelineid is required"}
	}
	name := c.q.Get("name")
	if name == "" {
		name = filename
	}
	t, aerr := s.parseUploadFile(filename, data)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findPipeline(pid) == nil {
		return nil, &apiError{status: http.StatusNotFound, bare: true, msg: "Failed to create a pipeline version: pipeline " + pid + " not found"}
	}
	for _, v := range s.versions {
		if v.pipelineID == pid && v.name == name {
			return nil, dupError(c.version, "pipeline version", name)
		}
	}
	v := &fakeVersion{id: newID(), pipelineID: pid, name: name, displayName: firstNonEmpty(c.q.Get("display_name"), name),
		description: c.q.Get("description"), created: time.Now().UTC(), tmpl: t}
	s.versions = append(s.versions, v)
	return render(c, v, versionV1, versionV2), nil
}

// byID returns the first of items whose id is want, or the zero value (nil) when none is.
func byID[T any](items []T, id func(T) string, want string) T {
	for _, x := range items {
		if id(x) == want {
			return x
		}
	}
	var none T
	return none
}

// findPipeline: caller holds s.mu.
func (s *Server) findPipeline(id string) *fakePipeline {
	return byID(s.pipelines, func(p *fakePipeline) string { return p.id }, id)
}

// findVersion: caller holds s.mu.
func (s *Server) findVersion(id string) *fakeVersion {
	return byID(s.versions, func(v *fakeVersion) string { return v.id }, id)
}

func (s *Server) latestVersion(pid string) *fakeVersion {
	var last *fakeVersion
	for _, v := range s.versions {
		if v.pipelineID == pid {
			last = v
		}
	}
	return last
}

func (s *Server) pipelineV1(p *fakePipeline) map[string]any {
	m := map[string]any{"id": p.id, "name": p.name, "description": p.description, "created_at": ts(p.created)}
	if v := s.latestVersion(p.id); v != nil {
		m["default_version"] = versionV1(v)
		if params := paramsV1(v.tmpl); len(params) > 0 {
			m["parameters"] = params
		}
	}
	return m
}

func paramsV1(t *template) []any {
	var out []any
	for _, p := range t.params {
		out = append(out, map[string]any{"name": p})
	}
	return out
}

func versionV1(v *fakeVersion) map[string]any {
	m := map[string]any{"id": v.id, "name": v.name, "created_at": ts(v.created), "description": v.description,
		"resource_references": []any{map[string]any{"key": map[string]any{"type": "PIPELINE", "id": v.pipelineID}, "relationship": "OWNER"}}}
	if params := paramsV1(v.tmpl); len(params) > 0 {
		m["parameters"] = params
	}
	return m
}

func pipelineV2(p *fakePipeline) map[string]any {
	m := map[string]any{"pipeline_id": p.id, "name": p.name, "display_name": p.displayName, "description": p.description, "created_at": ts(p.created)}
	if p.namespace != "" {
		m["namespace"] = p.namespace
	}
	return m
}

func versionV2(v *fakeVersion) map[string]any {
	return map[string]any{"pipeline_id": v.pipelineID, "pipeline_version_id": v.id, "name": v.name, "display_name": v.displayName,
		"description": v.description, "created_at": ts(v.created), "pipeline_spec": v.tmpl.doc}
}

func (s *Server) listPipelines(c *reqCtx) (any, *apiError) {
	f, aerr := parseFilter(c)
	if aerr != nil {
		return nil, aerr
	}
	ns := c.q.Get("namespace")
	if c.version == "v1beta1" && c.q.Get("resource_reference_key.type") == "NAMESPACE" {
		ns = c.q.Get("resource_reference_key.id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []listItem
	for _, p := range s.pipelines {
		if p.namespace != ns {
			continue
		}
		fields := map[string]string{"name": p.name, "display_name": p.displayName, "description": p.description}
		if !f.match(fields) {
			continue
		}
		items = append(items, listItem{obj: render(c, p, s.pipelineV1, pipelineV2), name: p.name, created: p.created})
	}
	return page(c, "pipelines", items)
}

func (s *Server) getPipeline(c *reqCtx) (any, *apiError) {
	id := firstNonEmpty(c.params["id"], c.params["pipeline_id"])
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.findPipeline(id)
	if p == nil {
		return nil, errf(http.StatusNotFound, "Pipeline %s not found", id)
	}
	return render(c, p, s.pipelineV1, pipelineV2), nil
}

func (s *Server) getPipelineByName(c *reqCtx) (any, *apiError) {
	name, ns := c.params["name"], c.q.Get("namespace")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pipelines {
		if p.name == name && p.namespace == ns {
			return pipelineV2(p), nil
		}
	}
	return nil, errf(http.StatusNotFound, "Pipeline with name %s not found", name)
}

func (s *Server) listVersionsV1(c *reqCtx) (any, *apiError) {
	if c.q.Get("resource_key.type") != "PIPELINE" || c.q.Get("resource_key.id") == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: ListPipelineVersions requires resource_key of type PIPELINE")
	}
	return s.listVersions(c, c.q.Get("resource_key.id"), "versions")
}

func (s *Server) listVersionsV2(c *reqCtx) (any, *apiError) {
	return s.listVersions(c, c.params["pipeline_id"], "pipeline_versions")
}

func (s *Server) listVersions(c *reqCtx, pid, key string) (any, *apiError) {
	f, aerr := parseFilter(c)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findPipeline(pid) == nil {
		return nil, errf(http.StatusNotFound, "Pipeline %s not found", pid)
	}
	var items []listItem
	for _, v := range s.versions {
		if v.pipelineID != pid || !f.match(map[string]string{"name": v.name, "display_name": v.displayName}) {
			continue
		}
		items = append(items, listItem{obj: render(c, v, versionV1, versionV2), name: v.name, created: v.created})
	}
	return page(c, key, items)
}

func (s *Server) getVersionV2(c *reqCtx) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.findVersion(c.params["pipeline_version_id"])
	if v == nil || v.pipelineID != c.params["pipeline_id"] {
		return nil, errf(http.StatusNotFound, "Pipeline version %s not found", c.params["pipeline_version_id"])
	}
	return versionV2(v), nil
}

// ---- experiments ----

func (s *Server) createExperimentV1(c *reqCtx) (any, *apiError) {
	req, aerr := decodeBody[struct {
		Name               string          `json:"name"`
		Description        string          `json:"description"`
		ResourceReferences []v1ResourceRef `json:"resource_references"`
	}](c)
	if aerr != nil {
		return nil, aerr
	}
	if req.Name == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: Experiment name is empty. Please specify a valid experiment name.")
	}
	ns := ""
	if s.opts.MultiUser {
		if len(req.ResourceReferences) != 1 || req.ResourceReferences[0].Key.Type != "NAMESPACE" ||
			req.ResourceReferences[0].Relationship != "OWNER" || req.ResourceReferences[0].Key.ID == "" {
			return nil, errf(http.StatusBadRequest, "Invalid input error: Invalid resource references for experiment. Expect one namespace type with owner relationship.")
		}
		ns = req.ResourceReferences[0].Key.ID
	} else if len(req.ResourceReferences) > 0 {
		return nil, errf(http.StatusBadRequest, "Invalid input error: In single-user mode, CreateExperimentRequest shouldn't contain resource references.")
	}
	e, aerr := s.addExperiment(req.Name, req.Description, ns)
	if aerr != nil {
		return nil, aerr
	}
	return experimentV1(e), nil
}

func (s *Server) createExperimentV2(c *reqCtx) (any, *apiError) {
	req, aerr := decodeBody[struct {
		DisplayName string `json:"display_name"`
		Description string `json:"description"`
		Namespace   string `json:"namespace"`
	}](c)
	if aerr != nil {
		return nil, aerr
	}
	if req.DisplayName == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: Experiment name is empty. Please specify a valid experiment name.")
	}
	ns := req.Namespace
	if s.opts.MultiUser && ns == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: In multi-user mode, experiment namespace must not be empty.")
	}
	if !s.opts.MultiUser {
		ns = ""
	}
	e, aerr := s.addExperiment(req.DisplayName, req.Description, ns)
	if aerr != nil {
		return nil, aerr
	}
	return experimentV2(e), nil
}

func (s *Server) addExperiment(name, desc, ns string) (*fakeExperiment, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.experiments {
		if e.name == name && e.namespace == ns {
			return nil, errf(http.StatusConflict, "Already exist error: Failed to create a new experiment. The name %s already exists. Please specify a new name.", name)
		}
	}
	e := &fakeExperiment{id: newID(), name: name, description: desc, namespace: ns, created: time.Now().UTC()}
	s.experiments = append(s.experiments, e)
	return e, nil
}

func experimentV1(e *fakeExperiment) map[string]any {
	m := map[string]any{"id": e.id, "name": e.name, "description": e.description, "created_at": ts(e.created), "storage_state": "STORAGESTATE_AVAILABLE"}
	if e.namespace != "" {
		m["resource_references"] = []any{map[string]any{"key": map[string]any{"type": "NAMESPACE", "id": e.namespace}, "relationship": "OWNER"}}
	}
	return m
}

func experimentV2(e *fakeExperiment) map[string]any {
	m := map[string]any{"experiment_id": e.id, "display_name": e.name, "description": e.description, "created_at": ts(e.created), "storage_state": "AVAILABLE"}
	if e.namespace != "" {
		m["namespace"] = e.namespace
	}
	return m
}

// findExperiment: caller holds s.mu.
func (s *Server) findExperiment(id string) *fakeExperiment {
	return byID(s.experiments, func(e *fakeExperiment) string { return e.id }, id)
}

func (s *Server) listExperiments(c *reqCtx) (any, *apiError) {
	f, aerr := parseFilter(c)
	if aerr != nil {
		return nil, aerr
	}
	ns, _ := listScope(c)
	if s.opts.MultiUser && ns == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: In multi-user mode, ListExperiment must filter by a namespace.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []listItem
	for _, e := range s.experiments {
		if (s.opts.MultiUser && e.namespace != ns) || !f.match(map[string]string{"name": e.name, "display_name": e.name}) {
			continue
		}
		items = append(items, listItem{obj: render(c, e, experimentV1, experimentV2), name: e.name, created: e.created})
	}
	return page(c, "experiments", items)
}

func (s *Server) getExperiment(c *reqCtx) (any, *apiError) {
	id := firstNonEmpty(c.params["id"], c.params["experiment_id"])
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.findExperiment(id)
	if e == nil {
		return nil, errf(http.StatusNotFound, "Experiment %s not found", id)
	}
	return render(c, e, experimentV1, experimentV2), nil
}

// defaultExperiment returns (creating) the single-user "Default" experiment. Caller holds s.mu.
func (s *Server) defaultExperiment() *fakeExperiment {
	for _, e := range s.experiments {
		if e.name == "Default" && e.namespace == "" {
			return e
		}
	}
	e := &fakeExperiment{id: newID(), name: "Default", description: "All runs created without specifying an experiment will be grouped here.", created: time.Now().UTC()}
	s.experiments = append(s.experiments, e)
	return e
}

// ---- lists ----

// listScope is the namespace and experiment a list request is limited to: v1beta1 names one of
// them in resource_reference_key, v2beta1 has a query parameter for each.
func listScope(c *reqCtx) (namespace, experimentID string) {
	if c.version != "v1beta1" {
		return c.q.Get("namespace"), c.q.Get("experiment_id")
	}
	switch c.q.Get("resource_reference_key.type") {
	case "NAMESPACE":
		namespace = c.q.Get("resource_reference_key.id")
	case "EXPERIMENT":
		experimentID = c.q.Get("resource_reference_key.id")
	}
	return namespace, experimentID
}

type listItem struct {
	obj     any
	name    string
	created time.Time
}

// filter is a parsed Filter proto with the predicates the fake supports.
type filter struct {
	preds []struct{ key, op, value string }
}

func (f filter) match(fields map[string]string) bool {
	for _, p := range f.preds {
		v := fields[p.key]
		switch p.op {
		case "EQUALS":
			if v != p.value {
				return false
			}
		case "NOT_EQUALS":
			if v == p.value {
				return false
			}
		case "IS_SUBSTRING":
			if !strings.Contains(v, p.value) {
				return false
			}
		}
	}
	return true
}

var filterKeys = map[string]bool{"name": true, "display_name": true, "description": true}

// parseFilter decodes the filter query: v1 predicates use "op", v2 "operation".
func parseFilter(c *reqCtx) (filter, *apiError) {
	var f filter
	raw := c.q.Get("filter")
	if raw == "" {
		return f, nil
	}
	var doc struct {
		Predicates []map[string]any `json:"predicates"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		return f, errf(http.StatusBadRequest, "Invalid input error: filter is not valid JSON: %v", err)
	}
	opKey := "op"
	if c.version == "v2beta1" {
		opKey = "operation"
	}
	for _, p := range doc.Predicates {
		for k := range p {
			switch k {
			case "key", opKey, "string_value", "int_value", "long_value", "timestamp_value":
			default:
				return f, errf(http.StatusBadRequest, "Invalid input error: unknown predicate field %q in %s filter", k, c.version)
			}
		}
		key, op, val := str(p["key"]), str(p[opKey]), str(p["string_value"])
		if !filterKeys[key] {
			return f, errf(http.StatusBadRequest, "Invalid input error: filter key %q is not supported", key)
		}
		switch op {
		case "EQUALS", "NOT_EQUALS", "IS_SUBSTRING":
		default:
			return f, errf(http.StatusBadRequest, "Invalid input error: filter operation %q is not supported", op)
		}
		f.preds = append(f.preds, struct{ key, op, value string }{key, op, val})
	}
	return f, nil
}

// page sorts (sort_by "name"/"created_at" with optional " desc") and pages (page_token is an
// offset) a list.
func page(c *reqCtx, key string, items []listItem) (any, *apiError) {
	sortBy := strings.TrimSpace(c.q.Get("sort_by"))
	field, dir, _ := strings.Cut(sortBy, " ")
	desc := strings.TrimSpace(dir) == "desc"
	switch field {
	case "", "created_at":
		sort.SliceStable(items, func(i, j int) bool { return items[i].created.Before(items[j].created) })
	case "name", "display_name":
		sort.SliceStable(items, func(i, j int) bool { return items[i].name < items[j].name })
	default:
		return nil, errf(http.StatusBadRequest, "Invalid input error: cannot sort by %q", field)
	}
	if desc {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	size := 20
	if ps := c.q.Get("page_size"); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 0 {
			return nil, errf(http.StatusBadRequest, "Invalid input error: page_size %q", ps)
		}
		if n > 0 {
			size = n
		}
	}
	off := 0
	if tok := c.q.Get("page_token"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 {
			return nil, errf(http.StatusBadRequest, "Invalid input error: page_token %q", tok)
		}
		off = n
	}
	total := len(items)
	if off > total {
		off = total
	}
	end := off + size
	if end > total {
		end = total
	}
	objs := make([]any, 0, end-off)
	for _, it := range items[off:end] {
		objs = append(objs, it.obj)
	}
	out := map[string]any{"total_size": total}
	if len(objs) > 0 {
		out[key] = objs
	}
	if end < total {
		out["next_page_token"] = strconv.Itoa(end)
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

var dnsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsName makes a workflow-name prefix from a pipeline name.
func dnsName(s string) string {
	s = strings.Trim(dnsUnsafe.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		s = "pipeline"
	}
	return s
}
