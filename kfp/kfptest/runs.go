package kfptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
)

// ---- create ----

type v1RunReq struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	PipelineSpec *struct {
		PipelineID       string `json:"pipeline_id"`
		WorkflowManifest string `json:"workflow_manifest"`
		PipelineManifest string `json:"pipeline_manifest"`
		Parameters       []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"parameters"`
	} `json:"pipeline_spec"`
	ResourceReferences []v1ResourceRef `json:"resource_references"`
	ServiceAccount     string          `json:"service_account"`
}

// v1ResourceRef is v1beta1's apiResourceReference, as experiment and run creates send it.
type v1ResourceRef struct {
	Key struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"key"`
	Relationship string `json:"relationship"`
}

// createRunV1 follows KFP 1.8's rules (kfp.md §1.3).
func (s *Server) createRunV1(c *reqCtx) (any, *apiError) {
	req, aerr := decodeBody[v1RunReq](c)
	if aerr != nil {
		return nil, aerr
	}
	if req.Name == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: The run name is empty. Please specify a valid name.")
	}
	var expID, versionID string
	for _, r := range req.ResourceReferences {
		switch r.Key.Type {
		case "EXPERIMENT":
			if r.Relationship != "OWNER" {
				return nil, errf(http.StatusBadRequest, "Invalid input error: experiment reference must have relationship OWNER")
			}
			expID = r.Key.ID
		case "PIPELINE_VERSION":
			if r.Relationship != "CREATOR" {
				return nil, errf(http.StatusBadRequest, "Invalid input error: pipeline version reference must have relationship CREATOR")
			}
			versionID = r.Key.ID
		case "NAMESPACE":
			return nil, errf(http.StatusBadRequest, "Invalid input error: a run takes its namespace from its experiment")
		}
	}
	spec := req.PipelineSpec
	if spec == nil {
		return nil, errf(http.StatusBadRequest, "Invalid input error: Please specify a pipeline by providing a pipeline ID, pipeline version or workflow manifest.")
	}
	params := map[string]any{}
	for _, p := range spec.Parameters {
		params[p.Name] = p.Value
	}
	run := &FakeRun{ID: newID(), Name: req.Name, Description: req.Description, APIVersion: "v1beta1", Parameters: params}
	var tmpl *template
	inline := spec.WorkflowManifest != ""
	switch {
	case inline && (spec.PipelineID != "" || versionID != ""):
		return nil, errf(http.StatusBadRequest, "Invalid input error: Please don't specify a pipeline version or pipeline ID when you specify a workflow manifest or pipeline manifest.")
	case inline:
		// KFP 1.8 json.Unmarshals the manifest: YAML is rejected.
		wf, err := decodeObject(strings.NewReader(spec.WorkflowManifest))
		if err != nil {
			return nil, errf(http.StatusBadRequest, "Invalid input error: Invalid argo workflow format. Workflow: %v", err)
		}
		t, err := lintWorkflow(wf)
		if err != nil || str(wf["kind"]) != "Workflow" || str(wf["apiVersion"]) != "argoproj.io/v1alpha1" {
			msg := "not an argoproj.io/v1alpha1 Workflow"
			if err != nil {
				msg = err.Error()
			}
			return nil, errf(http.StatusBadRequest, "Invalid input error: Invalid argo workflow format. Workflow: %s", msg)
		}
		tmpl = t
	default:
		s.mu.Lock()
		v, aerr := s.resolveVersion(spec.PipelineID, versionID)
		s.mu.Unlock()
		if aerr != nil {
			return nil, aerr
		}
		tmpl, run.PipelineID, run.VersionID = v.tmpl, v.pipelineID, v.id
	}
	if aerr := checkParams(tmpl, params); aerr != nil {
		return nil, aerr
	}
	if aerr := s.placeRun(run, expID); aerr != nil {
		return nil, aerr
	}
	if aerr := s.startRun(run, tmpl); aerr != nil {
		return nil, aerr
	}
	return s.runDetailV1(run), nil
}

// resolveVersion finds the version for (pipeline ID, version ID). Caller holds s.mu.
func (s *Server) resolveVersion(pipelineID, versionID string) (*fakeVersion, *apiError) {
	if versionID != "" {
		v := s.findVersion(versionID)
		if v == nil {
			return nil, errf(http.StatusNotFound, "Pipeline version %s not found", versionID)
		}
		if pipelineID != "" && v.pipelineID != pipelineID {
			return nil, errf(http.StatusBadRequest, "Invalid input error: pipeline version %s does not belong to pipeline %s", versionID, pipelineID)
		}
		return v, nil
	}
	if pipelineID == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: Please specify a pipeline by providing a pipeline ID, pipeline version or workflow manifest.")
	}
	if s.findPipeline(pipelineID) == nil {
		return nil, errf(http.StatusNotFound, "Pipeline %s not found", pipelineID)
	}
	v := s.latestVersion(pipelineID)
	if v == nil {
		return nil, errf(http.StatusBadRequest, "Invalid input error: pipeline %s has no version", pipelineID)
	}
	return v, nil
}

// checkParams: run parameters must be declared by the pipeline.
func checkParams(t *template, params map[string]any) *apiError {
	declared := map[string]bool{}
	for _, p := range t.params {
		declared[p] = true
	}
	for name := range params {
		if !declared[name] {
			return errf(http.StatusBadRequest, "Invalid input error: unrecognized input parameter: %s", name)
		}
	}
	return nil
}

// placeRun resolves the experiment and namespace (multi-user: experiment required, namespace
// from it; single-user: Default experiment when none).
func (s *Server) placeRun(run *FakeRun, expID string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if expID == "" {
		if s.opts.MultiUser {
			if run.APIVersion == "v1beta1" {
				return errf(http.StatusBadRequest, "Invalid input error: Job has no experiment.")
			}
			return errf(http.StatusBadRequest, "Invalid input error: In multi-user mode, a run needs an experiment (namespace is empty).")
		}
		expID = s.defaultExperiment().id
	}
	e := s.findExperiment(expID)
	if e == nil {
		return errf(http.StatusNotFound, "Experiment %s not found", expID)
	}
	run.ExperimentID, run.Namespace = e.id, e.namespace
	return nil
}

type v2RunReq struct {
	ExperimentID             string          `json:"experiment_id"`
	DisplayName              string          `json:"display_name"`
	Description              string          `json:"description"`
	PipelineSpec             json.RawMessage `json:"pipeline_spec"`
	PipelineVersionReference *struct {
		PipelineID        string `json:"pipeline_id"`
		PipelineVersionID string `json:"pipeline_version_id"`
	} `json:"pipeline_version_reference"`
	PipelineVersionID string `json:"pipeline_version_id"`
	RuntimeConfig     *struct {
		Parameters   map[string]any `json:"parameters"`
		PipelineRoot string         `json:"pipeline_root"`
	} `json:"runtime_config"`
	ServiceAccount string         `json:"service_account"`
	RunID          string         `json:"run_id"`
	State          string         `json:"state"`
	PluginsOutput  map[string]any `json:"plugins_output"`
}

// createRunV2 follows KFP 2.x's rules (kfp.md §2.2).
func (s *Server) createRunV2(c *reqCtx) (any, *apiError) {
	req, aerr := decodeBody[v2RunReq](c)
	if aerr != nil {
		return nil, aerr
	}
	if req.DisplayName == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: The run display name is empty. Please specify a valid name.")
	}
	if req.RunID != "" || req.State != "" || req.PluginsOutput != nil {
		return nil, errf(http.StatusBadRequest, "Invalid input error: run_id, state and plugins_output are output-only")
	}
	params := map[string]any{}
	if req.RuntimeConfig != nil {
		for k, v := range req.RuntimeConfig.Parameters {
			params[k] = v
		}
	}
	run := &FakeRun{ID: newID(), Name: req.DisplayName, Description: req.Description, APIVersion: "v2beta1", Parameters: params}
	hasSpec := len(bytes.TrimSpace(req.PipelineSpec)) > 0 && string(bytes.TrimSpace(req.PipelineSpec)) != "null"
	var ref struct{ pid, vid string }
	if req.PipelineVersionReference != nil {
		ref.pid, ref.vid = req.PipelineVersionReference.PipelineID, req.PipelineVersionReference.PipelineVersionID
	}
	if ref.vid == "" {
		ref.vid = req.PipelineVersionID
	}
	var tmpl *template
	switch {
	case hasSpec && (ref.pid != "" || ref.vid != ""):
		return nil, errf(http.StatusBadRequest, "Invalid input error: a run takes either pipeline_spec or pipeline_version_reference, not both")
	case hasSpec:
		doc, err := decodeObject(bytes.NewReader(req.PipelineSpec))
		if err != nil {
			return nil, errf(http.StatusBadRequest, "Invalid input error: pipeline_spec: %v", err)
		}
		var platform map[string]any
		if inner := mapOf(doc["pipeline_spec"]); inner != nil {
			doc, platform = inner, mapOf(doc["platform_spec"]) // {pipeline_spec, platform_spec} form
		}
		t, err := checkIR(doc)
		if err != nil {
			return nil, errf(http.StatusBadRequest, "Invalid input error: %v", err)
		}
		t.platform = platform
		tmpl = t
	case ref.vid != "":
		s.mu.Lock()
		v, aerr := s.resolveVersion(ref.pid, ref.vid)
		s.mu.Unlock()
		if aerr != nil {
			return nil, aerr
		}
		tmpl, run.PipelineID, run.VersionID = v.tmpl, v.pipelineID, v.id
	default:
		return nil, errf(http.StatusBadRequest, "Invalid input error: a run needs pipeline_spec or pipeline_version_reference.pipeline_version_id")
	}
	if aerr := checkParams(tmpl, params); aerr != nil {
		return nil, aerr
	}
	if aerr := s.placeRun(run, req.ExperimentID); aerr != nil {
		return nil, aerr
	}
	if aerr := s.startRun(run, tmpl); aerr != nil {
		return nil, aerr
	}
	return s.runV2(run), nil
}

// startRun stores the run, injects what KFP injects, and hands it to the executor.
func (s *Server) startRun(run *FakeRun, t *template) *apiError {
	run.CreatedAt = time.Now().UTC()
	run.nodes = map[string]*nodeState{}
	run.done = make(chan struct{})
	var err error
	if t.kind == TemplateArgo {
		wf := deepCopy(t.doc).(map[string]any)
		meta := mapOf(wf["metadata"])
		if meta == nil {
			meta = map[string]any{}
			wf["metadata"] = meta
		}
		name := str(meta["name"])
		if name == "" {
			name = firstNonEmpty(str(meta["generateName"]), dnsName(run.Name)+"-") + randSuffix(5)
		}
		meta["name"], meta["uid"], meta["namespace"] = name, run.ID, firstNonEmpty(run.Namespace, "kubeflow")
		labels := mapOf(meta["labels"])
		if labels == nil {
			labels = map[string]any{}
			meta["labels"] = labels
		}
		labels["pipeline/runid"] = run.ID
		ann := mapOf(meta["annotations"])
		if ann == nil {
			ann = map[string]any{}
			meta["annotations"] = ann
		}
		ann["pipelines.kubeflow.org/run_name"] = run.Name
		spec := mapOf(wf["spec"])
		for _, p := range sliceOf(mapOf(spec["arguments"])["parameters"]) {
			pm := mapOf(p)
			if v, ok := run.Parameters[str(pm["name"])]; ok {
				pm["value"] = str(v)
			}
		}
		run.WorkflowName, run.Workflow = name, wf
		run.Steps, err = stepsFromWorkflow(wf)
	} else {
		run.PipelineSpec = deepCopy(t.doc).(map[string]any)
		if t.platform != nil {
			run.PlatformSpec = deepCopy(t.platform).(map[string]any)
		}
		run.WorkflowName = dnsName(str(mapOf(run.PipelineSpec["pipelineInfo"])["name"])) + "-" + randSuffix(5)
		run.Steps, err = stepsFromIR(run.PipelineSpec)
	}
	if err != nil {
		return errf(http.StatusBadRequest, "Invalid input error: %v", err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	run.cancel = cancel
	s.mu.Lock()
	s.runs = append(s.runs, run)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(run.done)
		defer cancel()
		run.SetPhase(PhasePending, "")
		s.opts.Executor.Start(ctx, run)
		run.finish()
	}()
	return nil
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// findRun: caller holds s.mu.
func (s *Server) findRun(id string) *FakeRun {
	return byID(s.runs, func(r *FakeRun) string { return r.ID }, id)
}

// runParam returns the run of the run_id path parameter, or KFP's 404.
func (s *Server) runParam(c *reqCtx) (*FakeRun, *apiError) {
	s.mu.Lock()
	run := s.findRun(c.params["run_id"])
	s.mu.Unlock()
	if run == nil {
		return nil, errf(http.StatusNotFound, "Run %s not found", c.params["run_id"])
	}
	return run, nil
}

func (s *Server) getRun(c *reqCtx) (any, *apiError) {
	run, aerr := s.runParam(c)
	if aerr != nil {
		return nil, aerr
	}
	return render(c, run, s.runDetailV1, s.runV2), nil
}

func (s *Server) terminateRun(c *reqCtx) (any, *apiError) {
	run, aerr := s.runParam(c)
	if aerr != nil {
		return nil, aerr
	}
	run.mu.Lock()
	run.terminated = true
	run.mu.Unlock()
	run.cancel()
	return map[string]any{}, nil
}

func (s *Server) listRuns(c *reqCtx) (any, *apiError) {
	f, aerr := parseFilter(c)
	if aerr != nil {
		return nil, aerr
	}
	ns, exp := listScope(c)
	if s.opts.MultiUser && ns == "" && exp == "" {
		return nil, errf(http.StatusBadRequest, "Invalid input error: In multi-user mode, ListRuns must filter by namespace or experiment.")
	}
	s.mu.Lock()
	runs := append([]*FakeRun(nil), s.runs...)
	s.mu.Unlock()
	var items []listItem
	for _, r := range runs {
		if (exp != "" && r.ExperimentID != exp) || (ns != "" && r.Namespace != ns) ||
			!f.match(map[string]string{"name": r.Name, "display_name": r.Name, "description": r.Description}) {
			continue
		}
		items = append(items, listItem{obj: render(c, r, s.runSummaryV1, s.runSummaryV2), name: r.Name, created: r.CreatedAt})
	}
	return page(c, "runs", items)
}

// ---- run views ----

func (s *Server) runV1(r *FakeRun, withManifest bool) map[string]any {
	snap := r.snapshot()
	status := snap.phase
	if snap.terminated && !isFinalPhase(snap.phase) {
		status = "Terminating"
	}
	s.mu.Lock()
	exp := s.findExperiment(r.ExperimentID)
	s.mu.Unlock()
	refs := []any{map[string]any{"key": map[string]any{"type": "EXPERIMENT", "id": r.ExperimentID}, "name": exp.name, "relationship": "OWNER"}}
	if r.Namespace != "" {
		refs = append(refs, map[string]any{"key": map[string]any{"type": "NAMESPACE", "id": r.Namespace}, "relationship": "OWNER"})
	}
	if r.VersionID != "" {
		refs = append(refs, map[string]any{"key": map[string]any{"type": "PIPELINE_VERSION", "id": r.VersionID}, "relationship": "CREATOR"})
	}
	spec := map[string]any{}
	if r.PipelineID != "" {
		spec["pipeline_id"] = r.PipelineID
	}
	var params []any
	keys := sortedKeys(r.Parameters)
	for _, k := range keys {
		params = append(params, map[string]any{"name": k, "value": str(r.Parameters[k])})
	}
	if len(params) > 0 {
		spec["parameters"] = params
	}
	if withManifest && r.Workflow != nil && r.PipelineID == "" {
		b, _ := json.Marshal(r.Workflow)
		spec["workflow_manifest"] = string(b)
	}
	m := map[string]any{
		"id": r.ID, "name": r.Name, "description": r.Description, "storage_state": "STORAGESTATE_AVAILABLE",
		"pipeline_spec": spec, "resource_references": refs, "created_at": ts(r.CreatedAt), "scheduled_at": ts(r.CreatedAt),
		"finished_at": ts(snap.finishedAt), "status": status,
	}
	return m
}

// runSummaryV1 is a run as v1beta1 lists it: without the workflow manifest.
func (s *Server) runSummaryV1(r *FakeRun) map[string]any { return s.runV1(r, false) }

// runSummaryV2 is a run as v2beta1 lists it: without run_details.
func (s *Server) runSummaryV2(r *FakeRun) map[string]any {
	m := s.runV2(r)
	delete(m, "run_details")
	return m
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (s *Server) runDetailV1(r *FakeRun) map[string]any {
	return map[string]any{
		"run":              s.runV1(r, true),
		"pipeline_runtime": map[string]any{"workflow_manifest": s.workflowManifest(r)},
	}
}

// workflowManifest is the Argo Workflow as the persistence agent reports it: the stored workflow
// (or, for IR runs, a synthesized one) with status.nodes, or status.compressedNodes when
// Options.CompressNodes is set.
func (s *Server) workflowManifest(r *FakeRun) string {
	snap := r.snapshot()
	var wf map[string]any
	if r.Workflow != nil {
		wf = deepCopy(r.Workflow).(map[string]any)
	} else {
		wf = map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
			"metadata": map[string]any{"name": r.WorkflowName, "uid": r.ID, "namespace": firstNonEmpty(r.Namespace, "kubeflow"),
				"labels": map[string]any{"pipeline/runid": r.ID}},
			"spec": map[string]any{"entrypoint": r.WorkflowName}}
	}
	entry := str(mapOf(wf["spec"])["entrypoint"])
	nodes := map[string]kfp.ArgoNode{}
	root := kfp.ArgoNode{ID: r.WorkflowName, Name: r.WorkflowName, DisplayName: r.WorkflowName, Type: "DAG", TemplateName: entry,
		Phase: snap.phase, StartedAt: kfp.ArgoTime{Time: snap.startedAt}, FinishedAt: kfp.ArgoTime{Time: snap.finishedAt}}
	for _, n := range snap.nodes {
		nodes[n.node.ID] = n.node
		root.Children = append(root.Children, n.node.ID)
	}
	if snap.phase != "" {
		nodes[root.ID] = root
	}
	status := map[string]any{"phase": snap.phase, "startedAt": nullTime(snap.startedAt), "finishedAt": nullTime(snap.finishedAt)}
	if snap.message != "" {
		status["message"] = snap.message
	}
	if s.opts.CompressNodes && len(nodes) > 0 {
		c, err := kfp.CompressNodes(nodes)
		if err != nil {
			panic(fmt.Sprintf("kfptest: %v", err))
		}
		status["compressedNodes"] = c
	} else if len(nodes) > 0 {
		status["nodes"] = nodes
	}
	wf["status"] = status
	b, _ := json.Marshal(wf)
	return string(b)
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// v2State maps an Argo phase to a v2 RuntimeState; terminated runs end CANCELED.
func v2State(phase string, terminated bool) string {
	switch phase {
	case "", PhasePending:
		if terminated {
			return "CANCELING"
		}
		return "PENDING"
	case PhaseRunning:
		if terminated {
			return "CANCELING"
		}
		return "RUNNING"
	case PhaseSucceeded:
		return "SUCCEEDED"
	case PhaseSkipped, PhaseOmitted:
		return "SKIPPED"
	case PhaseFailed, PhaseError:
		if terminated {
			return "CANCELED"
		}
		return "FAILED"
	}
	return "RUNTIME_STATE_UNSPECIFIED"
}

// runV2 renders a v2beta1 Run with run_details.task_details: a root DAG task, and per step a
// driver task and an executor task, as KFP 2.x reports them.
func (s *Server) runV2(r *FakeRun) map[string]any {
	snap := r.snapshot()
	state := v2State(snap.phase, snap.terminated)
	m := map[string]any{
		"run_id": r.ID, "experiment_id": r.ExperimentID, "display_name": r.Name, "description": r.Description,
		"storage_state": "AVAILABLE", "created_at": ts(r.CreatedAt), "scheduled_at": ts(r.CreatedAt), "finished_at": ts(snap.finishedAt),
		"state":         state,
		"state_history": []any{map[string]any{"update_time": ts(time.Now()), "state": state}},
	}
	if r.VersionID != "" {
		m["pipeline_version_reference"] = map[string]any{"pipeline_id": r.PipelineID, "pipeline_version_id": r.VersionID}
	} else if r.PipelineSpec != nil {
		m["pipeline_spec"] = r.PipelineSpec
	}
	if len(r.Parameters) > 0 {
		m["runtime_config"] = map[string]any{"parameters": r.Parameters}
	}
	if state == "FAILED" && snap.message != "" {
		m["error"] = map[string]any{"code": 2, "message": snap.message}
	}
	rootID := r.WorkflowName
	var tasks []any
	var children []any
	for _, n := range snap.nodes {
		nst := v2State(n.node.Phase, n.terminated)
		children = append(children, map[string]any{"task_id": n.node.ID, "pod_name": n.node.ID})
		driver := map[string]any{"run_id": r.ID, "task_id": n.node.ID + "-driver", "display_name": n.step + "-driver",
			"state": "SUCCEEDED", "parent_task_id": rootID, "pod_name": n.node.ID + "-driver"}
		addTimes(driver, n.node.StartedAt.Time, n.node.StartedAt.Time)
		exec := map[string]any{"run_id": r.ID, "task_id": n.node.ID, "display_name": n.step, "state": nst, "parent_task_id": rootID,
			"pod_name": n.node.ID, "executor_detail": map[string]any{"main_job": n.node.ID}}
		addTimes(exec, n.node.StartedAt.Time, n.node.FinishedAt.Time)
		if n.node.Message != "" && (nst == "FAILED" || nst == "CANCELED") {
			exec["error"] = map[string]any{"code": 2, "message": n.node.Message}
		}
		tasks = append(tasks, driver, exec)
	}
	if snap.phase != "" {
		root := map[string]any{"run_id": r.ID, "task_id": rootID, "display_name": "root", "state": state}
		addTimes(root, snap.startedAt, snap.finishedAt)
		if len(children) > 0 {
			root["child_tasks"] = children
		}
		tasks = append([]any{root}, tasks...)
	}
	if len(tasks) > 0 {
		m["run_details"] = map[string]any{"task_details": tasks}
	}
	return m
}

func addTimes(m map[string]any, start, end time.Time) {
	if !start.IsZero() {
		m["create_time"] = ts(start)
		m["start_time"] = ts(start)
	}
	if !end.IsZero() {
		m["end_time"] = ts(end)
	}
}
