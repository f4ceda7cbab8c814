package kfp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
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
	q := url.Values{"name": {r.Name}, "display_name": {firstNonEmpty(r.DisplayName, r.Name)}}
	if r.Description != "" {
		q.Set("description", r.Description)
	}
	if r.Namespace != "" {
		q.Set("namespace", r.Namespace)
	}
	var out v2Pipeline
	cl, err := uploadCall("upload pipeline", v2Prefix+"/pipelines/upload", q, r, &out)
	if err != nil {
		return nil, nil, err
	}
	cl.lookup = func(ctx context.Context) (bool, error) {
		p, err := a.findPipelineRaw(ctx, r.Name, r.Namespace)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out = *p
		return true, nil
	}
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
	cl, _ := jsonCall("list pipeline versions", http.MethodGet, v2Prefix+"/pipelines/"+url.PathEscape(pipelineID)+"/versions", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	if len(out.PipelineVersions) == 0 {
		return nil, notFound("list pipeline versions", a.c.endpoint(cl), "pipeline "+pipelineID+" has no version")
	}
	return v2VersionOut(out.PipelineVersions[0]), nil
}

func (a v2api) uploadVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error) {
	q := url.Values{"name": {r.Name}, "display_name": {firstNonEmpty(r.DisplayName, r.Name)}, "pipelineid": {pipelineID}}
	if r.Description != "" {
		q.Set("description", r.Description)
	}
	var out v2PipelineVersion
	cl, err := uploadCall("upload pipeline version", v2Prefix+"/pipelines/upload_version", q, r, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = func(ctx context.Context) (bool, error) {
		v, err := a.findVersionRaw(ctx, pipelineID, r.Name)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out = *v
		return true, nil
	}
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	v := v2VersionOut(out)
	if v.PipelineID == "" {
		v.PipelineID = pipelineID
	}
	return v, nil
}

func (a v2api) findPipelineRaw(ctx context.Context, name, namespace string) (*v2Pipeline, error) {
	q := url.Values{"filter": {v2FilterEquals("name", name)}, "page_size": {"10"}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	var out v2ListPipelines
	cl, _ := jsonCall("find pipeline", http.MethodGet, v2Prefix+"/pipelines", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	for i := range out.Pipelines {
		if out.Pipelines[i].Name == name {
			return &out.Pipelines[i], nil
		}
	}
	return nil, notFound("find pipeline", a.c.endpoint(cl), fmt.Sprintf("no pipeline named %q", name))
}

func (a v2api) findPipeline(ctx context.Context, name, namespace string) (*Pipeline, error) {
	p, err := a.findPipelineRaw(ctx, name, namespace)
	if err != nil {
		return nil, err
	}
	return v2PipelineOut(*p), nil
}

func (a v2api) findVersionRaw(ctx context.Context, pipelineID, name string) (*v2PipelineVersion, error) {
	q := url.Values{"filter": {v2FilterEquals("name", name)}, "page_size": {"10"}}
	var out v2ListVersions
	cl, _ := jsonCall("find pipeline version", http.MethodGet, v2Prefix+"/pipelines/"+url.PathEscape(pipelineID)+"/versions", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	for i := range out.PipelineVersions {
		if out.PipelineVersions[i].Name == name {
			return &out.PipelineVersions[i], nil
		}
	}
	return nil, notFound("find pipeline version", a.c.endpoint(cl), fmt.Sprintf("pipeline %s has no version named %q", pipelineID, name))
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
	cl.lookup = func(ctx context.Context) (bool, error) {
		e, err := a.findExperiment(ctx, name, namespace)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out = v2Experiment{ExperimentID: e.ID, DisplayName: e.Name, Description: e.Description, Namespace: e.Namespace, CreatedAt: ArgoTime{e.CreatedAt}}
		return true, nil
	}
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	return v2ExperimentOut(out), nil
}

func (a v2api) findExperiment(ctx context.Context, name, namespace string) (*Experiment, error) {
	q := url.Values{"filter": {v2FilterEquals("display_name", name)}, "page_size": {"10"}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	var out v2ListExperiments
	cl, _ := jsonCall("find experiment", http.MethodGet, v2Prefix+"/experiments", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	for _, e := range out.Experiments {
		if e.DisplayName == name {
			return v2ExperimentOut(e), nil
		}
	}
	return nil, notFound("find experiment", a.c.endpoint(cl), fmt.Sprintf("no experiment named %q", name))
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
		var compact bytes.Buffer
		if err := json.Compact(&compact, r.PipelineSpec); err != nil {
			return nil, invalid("create run", a.c.base.String(), "pipeline spec: "+err.Error())
		}
		req.PipelineSpec = compact.Bytes()
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
	started := time.Now()
	cl.lookup = func(ctx context.Context) (bool, error) {
		runs, _, err := a.listRuns(ctx, ListRunsRequest{ExperimentID: r.ExperimentID, Name: r.Name, PageSize: 20}, namespace)
		if err != nil {
			return false, err
		}
		if run := pickCreated(runs, r.Name, started); run != nil {
			out = v2Run{RunID: run.ID, DisplayName: run.Name, ExperimentID: run.ExperimentID, State: run.RawState,
				Description: run.Description, CreatedAt: ArgoTime{run.CreatedAt}}
			return true, nil
		}
		return false, nil
	}
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
			st.AllNodes = append(st.AllNodes, s)
			if s.Type == "Pod" {
				st.Steps = append(st.Steps, s)
			}
		}
	}
	sortSteps(st.Steps)
	sortSteps(st.AllNodes)
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
	q := url.Values{}
	if r.ExperimentID != "" {
		q.Set("experiment_id", r.ExperimentID)
	}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if r.Name != "" {
		q.Set("filter", v2FilterEquals("display_name", r.Name))
	}
	if r.PageSize > 0 {
		q.Set("page_size", fmt.Sprint(r.PageSize))
	}
	if r.PageToken != "" {
		q.Set("page_token", r.PageToken)
	}
	if r.SortBy != "" {
		q.Set("sort_by", r.SortBy)
	}
	var out v2ListRuns
	cl, _ := jsonCall("list runs", http.MethodGet, v2Prefix+"/runs", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, "", err
	}
	runs := make([]Run, 0, len(out.Runs))
	for _, x := range out.Runs {
		runs = append(runs, v2RunOut(x))
	}
	return runs, out.NextPageToken, nil
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
