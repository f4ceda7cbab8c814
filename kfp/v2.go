package kfp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// v2api implements the operations on /apis/v2beta1 (KFP 2.x).
type v2api struct{ c *Client }

const v2Prefix = "/apis/v2beta1"

func (a v2api) healthz(ctx context.Context) (Healthz, error) {
	var out v2Healthz
	cl, _ := jsonCall("healthz", http.MethodGet, v2Prefix+"/healthz", nil, &out)
	if err := a.c.do(ctx, cl); err != nil {
		return Healthz{}, err
	}
	return Healthz{APIVersion: V2Beta1, MultiUser: out.MultiUser, PipelineStore: out.PipelineStore}, nil
}

func v2FilterEquals(key, value string) string {
	b, _ := json.Marshal(v2Filter{Predicates: []v2Predicate{{Key: key, Operation: "EQUALS", StringValue: value}}})
	return string(b)
}

func (a v2api) uploadPipeline(ctx context.Context, r UploadRequest) (*Pipeline, *PipelineVersion, error) {
	q := uploadQuery(r)
	q.Set("display_name", firstNonEmpty(r.DisplayName, r.Name))
	v2ScopeNamespace(q, r.Namespace)
	var out v2Pipeline
	cl, err := uploadCall("upload pipeline", v2Prefix+"/pipelines/upload", q, r, &out)
	if err != nil {
		return nil, nil, err
	}
	cl.lookup = lookupFound(func(ctx context.Context) (*v2Pipeline, error) { return a.findPipelineRaw(ctx, r.Name, r.Namespace) },
		func(p *v2Pipeline) { out = *p })
	if err := a.c.do(ctx, cl); err != nil {
		return nil, nil, err
	}
	p := v2PipelineOut(out)
	// The v2 upload answer has no version: the first version is the newest one.
	v, err := a.latestVersion(ctx, p.ID)
	if err != nil {
		return p, nil, err
	}
	p.DefaultVersionID = v.ID
	return p, v, nil
}

func (a v2api) latestVersion(ctx context.Context, pipelineID string) (*PipelineVersion, error) {
	q := url.Values{"page_size": {"1"}, "sort_by": {"created_at desc"}}
	var out v2ListVersions
	cl := getCall("list pipeline versions", v2Prefix+"/pipelines/"+url.PathEscape(pipelineID)+"/versions", q, &out)
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	if len(out.PipelineVersions) == 0 {
		return nil, notFound("list pipeline versions", a.c.endpoint(cl), "pipeline "+pipelineID+" has no version")
	}
	return v2VersionOut(out.PipelineVersions[0]), nil
}

func (a v2api) uploadVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error) {
	q := uploadQuery(r)
	q.Set("display_name", firstNonEmpty(r.DisplayName, r.Name))
	q.Set("pipelineid", pipelineID)
	var out v2PipelineVersion
	cl, err := uploadCall("upload pipeline version", v2Prefix+"/pipelines/upload_version", q, r, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = lookupFound(
		func(ctx context.Context) (*v2PipelineVersion, error) {
			return a.findVersionRaw(ctx, pipelineID, r.Name)
		},
		func(v *v2PipelineVersion) { out = *v })
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	v := v2VersionOut(out)
	if v.PipelineID == "" {
		v.PipelineID = pipelineID
	}
	return v, nil
}

// v2ScopeNamespace limits a v2 list (or puts an upload) in a namespace; "" leaves q as is.
func v2ScopeNamespace(q url.Values, namespace string) url.Values {
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	return q
}

func (a v2api) findPipelineRaw(ctx context.Context, name, namespace string) (*v2Pipeline, error) {
	return findNamed(ctx, a.c, "find pipeline", v2Prefix+"/pipelines", v2ScopeNamespace(findQuery(v2FilterEquals, "name", name), namespace),
		func(l *v2ListPipelines) []v2Pipeline { return l.Pipelines }, func(p *v2Pipeline) string { return p.Name },
		name, fmt.Sprintf("no pipeline named %q", name))
}

func (a v2api) findPipeline(ctx context.Context, name, namespace string) (*Pipeline, error) {
	p, err := a.findPipelineRaw(ctx, name, namespace)
	if err != nil {
		return nil, err
	}
	return v2PipelineOut(*p), nil
}

func (a v2api) findVersionRaw(ctx context.Context, pipelineID, name string) (*v2PipelineVersion, error) {
	return findNamed(ctx, a.c, "find pipeline version", v2Prefix+"/pipelines/"+url.PathEscape(pipelineID)+"/versions", findQuery(v2FilterEquals, "name", name),
		func(l *v2ListVersions) []v2PipelineVersion { return l.PipelineVersions }, func(v *v2PipelineVersion) string { return v.Name },
		name, fmt.Sprintf("pipeline %s has no version named %q", pipelineID, name))
}

func (a v2api) findVersion(ctx context.Context, pipelineID, name string) (*PipelineVersion, error) {
	v, err := a.findVersionRaw(ctx, pipelineID, name)
	if err != nil {
		return nil, err
	}
	return v2VersionOut(*v), nil
}

func (a v2api) createExperiment(ctx context.Context, name, description, namespace string) (*Experiment, error) {
	var out v2Experiment
	cl, err := jsonCall("create experiment", http.MethodPost, v2Prefix+"/experiments",
		v2ExperimentReq{DisplayName: name, Description: description, Namespace: namespace}, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = lookupFound(func(ctx context.Context) (*Experiment, error) { return a.findExperiment(ctx, name, namespace) },
		func(e *Experiment) {
			out = v2Experiment{ExperimentID: e.ID, DisplayName: e.Name, Description: e.Description, Namespace: e.Namespace, CreatedAt: ArgoTime{e.CreatedAt}}
		})
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	return v2ExperimentOut(out), nil
}

func (a v2api) findExperiment(ctx context.Context, name, namespace string) (*Experiment, error) {
	e, err := findNamed(ctx, a.c, "find experiment", v2Prefix+"/experiments", v2ScopeNamespace(findQuery(v2FilterEquals, "display_name", name), namespace),
		func(l *v2ListExperiments) []v2Experiment { return l.Experiments }, func(e *v2Experiment) string { return e.DisplayName },
		name, fmt.Sprintf("no experiment named %q", name))
	if err != nil {
		return nil, err
	}
	return v2ExperimentOut(*e), nil
}

func (a v2api) createRun(ctx context.Context, r RunRequest, namespace string) (*Run, error) {
	if len(r.WorkflowManifest) > 0 {
		return nil, invalid("create run", a.c.base.String(), "an inline Argo workflow manifest needs the v1beta1 API (v2 takes an IR pipeline spec)")
	}
	if namespace != "" && r.ExperimentID == "" {
		return nil, invalid("create run", a.c.base.String(), "KFP is multi-user: a run needs an experiment")
	}
	req := v2RunReq{DisplayName: r.Name, Description: r.Description, ExperimentID: r.ExperimentID, ServiceAccount: r.ServiceAccount}
	if len(r.PipelineSpec) > 0 {
		spec, err := a.c.compactJSON("pipeline spec", r.PipelineSpec)
		if err != nil {
			return nil, err
		}
		req.PipelineSpec = spec
	} else {
		req.PipelineVersionReference = &v2VersionRef{PipelineID: r.PipelineID, PipelineVersionID: r.VersionID}
		if r.VersionID == "" {
			return nil, invalid("create run", a.c.base.String(), "v2 runs from a stored pipeline need its version ID")
		}
	}
	if len(r.Parameters) > 0 || r.PipelineRoot != "" {
		req.RuntimeConfig = &v2RuntimeConfig{Parameters: r.Parameters, PipelineRoot: r.PipelineRoot}
	}
	var out v2Run
	cl, err := jsonCall("create run", http.MethodPost, v2Prefix+"/runs", req, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = createdRunLookup(a.listRuns, r, namespace, func(run *Run) {
		out = v2Run{RunID: run.ID, DisplayName: run.Name, ExperimentID: run.ExperimentID, State: run.RawState,
			Description: run.Description, CreatedAt: ArgoTime{run.CreatedAt}}
	})
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	run := v2RunOut(out)
	return &run, nil
}

func (a v2api) getRun(ctx context.Context, id string) (*RunDetail, error) {
	var out v2Run
	cl, _ := jsonCall("get run", http.MethodGet, v2Prefix+"/runs/"+url.PathEscape(id), nil, &out)
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	d := &RunDetail{Run: v2RunOut(out)}
	st := RunStatus{RunID: out.RunID, RawState: out.State, State: normalizeV2State(out.State), FinishedAt: out.FinishedAt.Time}
	if out.Error != nil {
		st.Message = out.Error.Message
	}
	if out.RunDetails != nil {
		for _, t := range out.RunDetails.TaskDetails {
			td := TaskDetail{TaskID: t.TaskID, DisplayName: t.DisplayName, State: t.State, PodName: t.PodName,
				ParentTaskID: t.ParentTaskID, StartTime: t.StartTime.Time, EndTime: t.EndTime.Time, CreateTime: t.CreateTime.Time}
			if t.Error != nil {
				td.Error = t.Error.Message
			}
			if t.ExecutorDetail != nil {
				td.MainJob = t.ExecutorDetail.MainJob
			}
			for _, ch := range t.ChildTasks {
				td.ChildTasks = append(td.ChildTasks, firstNonEmpty(ch.TaskID, ch.PodName))
			}
			d.Tasks = append(d.Tasks, td)
			s := stepStatusFromTask(td)
			st.addNode(s, s.Type == "Pod")
		}
	}
	st.sortNodes()
	a.addExitCodes(ctx, id, &st)
	d.Status = st
	return d, nil
}

// addExitCodes fills exit codes of failed v2 steps, which task details do not carry, from the
// Argo workflow that the v1beta1 GET run of the same 2.x server still returns. Best effort: one
// attempt, errors ignored (the statuses are complete without exit codes).
func (a v2api) addExitCodes(ctx context.Context, runID string, st *RunStatus) {
	need := false
	for _, s := range st.Steps {
		if s.Phase == PhaseFailed && s.ExitCode == nil {
			need = true
		}
	}
	if !need {
		return
	}
	d, err := v1api(a).getRun(context.WithValue(ctx, singleAttemptKey{}, true), runID)
	if err != nil || d.Workflow == nil {
		return
	}
	wfName := d.Workflow.Metadata.Name
	byPod := map[string]ArgoNode{}
	for _, n := range d.Workflow.Status.Nodes {
		byPod[n.ID] = n
		byPod[podNameV2(wfName, n)] = n
	}
	for i := range st.Steps {
		s := &st.Steps[i]
		if s.ExitCode != nil || s.PodName == "" {
			continue
		}
		if n, ok := byPod[s.PodName]; ok {
			s.ExitCode = n.ExitCode()
		}
	}
}

// podNameV2 is Argo's v2 pod name of a node (kfp.md §1.4): "<workflow>-<template>-<hash>", the
// hash being the node ID's suffix; the workflow's own node is named after the workflow.
func podNameV2(wfName string, n ArgoNode) string {
	if n.Name == wfName || n.TemplateName == "" {
		return wfName
	}
	hash := n.ID[strings.LastIndex(n.ID, "-")+1:]
	prefix := wfName + "-" + n.TemplateName
	if len(prefix) > 242 {
		prefix = prefix[:242]
	}
	return prefix + "-" + hash
}

// stepStatusFromTask normalizes a v2 task. KFP 2.x reports driver and DAG tasks next to the
// executor tasks that ran user code; Type tells them apart ("Driver", "DAG", "Pod").
func stepStatusFromTask(t TaskDetail) StepStatus {
	typ := "Pod"
	switch {
	case len(t.ChildTasks) > 0 || (t.DisplayName == "root" && t.ParentTaskID == ""):
		// A user step may be named "root" too; only the pipeline's own root task has no parent.
		typ = "DAG"
	case strings.HasSuffix(t.DisplayName, "-driver"):
		typ = "Driver"
	}
	return StepStatus{
		ID: t.TaskID, Name: t.DisplayName, DisplayName: t.DisplayName, Type: typ, PodName: t.PodName,
		Phase: normalizeV2State(t.State), RawPhase: t.State, Message: t.Error,
		StartedAt: t.StartTime, FinishedAt: t.EndTime,
	}
}

func (a v2api) listRuns(ctx context.Context, r ListRunsRequest, namespace string) ([]Run, string, error) {
	q := v2ScopeNamespace(url.Values{}, namespace)
	if r.ExperimentID != "" {
		q.Set("experiment_id", r.ExperimentID)
	}
	return listRunsPage(ctx, a.c, v2Prefix+"/runs", listRunsQuery(q, r, v2FilterEquals, "display_name"),
		func(l *v2ListRuns) ([]v2Run, string) { return l.Runs, l.NextPageToken }, v2RunOut)
}

func (a v2api) terminateRun(ctx context.Context, id string) error {
	cl, _ := jsonCall("terminate run", http.MethodPost, v2Prefix+"/runs/"+url.PathEscape(id)+":terminate", nil, nil)
	cl.idempotent = true
	return a.c.do(ctx, cl)
}

func v2PipelineOut(p v2Pipeline) *Pipeline {
	return &Pipeline{ID: p.PipelineID, Name: p.Name, DisplayName: firstNonEmpty(p.DisplayName, p.Name), Description: p.Description,
		Namespace: p.Namespace, CreatedAt: p.CreatedAt.Time}
}

func v2VersionOut(v v2PipelineVersion) *PipelineVersion {
	return &PipelineVersion{ID: v.PipelineVersionID, PipelineID: v.PipelineID, Name: v.Name, DisplayName: firstNonEmpty(v.DisplayName, v.Name),
		Description: v.Description, CreatedAt: v.CreatedAt.Time}
}

func v2ExperimentOut(e v2Experiment) *Experiment {
	return &Experiment{ID: e.ExperimentID, Name: e.DisplayName, Description: e.Description, Namespace: e.Namespace, CreatedAt: e.CreatedAt.Time}
}

func v2RunOut(r v2Run) Run {
	out := Run{ID: r.RunID, Name: r.DisplayName, Description: r.Description, ExperimentID: r.ExperimentID, RawState: r.State,
		State: normalizeV2State(r.State), CreatedAt: r.CreatedAt.Time, FinishedAt: r.FinishedAt.Time, VersionID: r.PipelineVersionID}
	if r.PipelineVersionReference != nil {
		out.PipelineID = r.PipelineVersionReference.PipelineID
		out.VersionID = firstNonEmpty(r.PipelineVersionReference.PipelineVersionID, out.VersionID)
	}
	if r.Error != nil {
		out.Error = r.Error.Message
	}
	return out
}
