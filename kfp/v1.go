package kfp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
)

// v1api implements the operations on /apis/v1beta1 (KFP 1.x, still served by 2.x).
type v1api struct{ c *Client }

const v1Prefix = "/apis/v1beta1"

func (a v1api) healthz(ctx context.Context) (Healthz, error) {
	var out v1Healthz
	cl, _ := jsonCall("healthz", http.MethodGet, v1Prefix+"/healthz", nil, &out)
	if err := a.c.do(ctx, cl); err != nil {
		return Healthz{}, err
	}
	return Healthz{APIVersion: V1Beta1, MultiUser: out.MultiUser}, nil
}

func (a v1api) uploadPipeline(ctx context.Context, r UploadRequest) (*Pipeline, *PipelineVersion, error) {
	if r.Namespace != "" {
		return nil, nil, invalid("upload pipeline", a.c.base.String(), "namespaced (private) pipelines need the v2beta1 API")
	}
	var out v1Pipeline
	cl, err := uploadCall("upload pipeline", v1Prefix+"/pipelines/upload", uploadQuery(r), r, &out)
	if err != nil {
		return nil, nil, err
	}
	cl.lookup = lookupFound(func(ctx context.Context) (*v1Pipeline, error) { return a.findPipelineRaw(ctx, r.Name, "") },
		func(p *v1Pipeline) { out = *p })
	if err := a.c.do(ctx, cl); err != nil {
		return nil, nil, err
	}
	p := v1PipelineOut(out)
	var v *PipelineVersion
	if out.DefaultVersion != nil {
		v = v1VersionOut(*out.DefaultVersion, out.ID)
	}
	return p, v, nil
}

func (a v1api) uploadVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error) {
	q := uploadQuery(r)
	q.Set("pipelineid", pipelineID)
	var out v1PipelineVersion
	cl, err := uploadCall("upload pipeline version", v1Prefix+"/pipelines/upload_version", q, r, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = lookupFound(func(ctx context.Context) (*PipelineVersion, error) { return a.findVersion(ctx, pipelineID, r.Name) },
		func(v *PipelineVersion) {
			out = v1PipelineVersion{ID: v.ID, Name: v.Name, Description: v.Description, CreatedAt: ArgoTime{v.CreatedAt}}
		})
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	return v1VersionOut(out, pipelineID), nil
}

func v1FilterEquals(key, value string) string {
	b, _ := json.Marshal(v1Filter{Predicates: []v1Predicate{{Key: key, Op: "EQUALS", StringValue: value}}})
	return string(b)
}

// v1ScopeNamespace limits a v1 list to a namespace (a resource reference key); "" leaves q as is.
func v1ScopeNamespace(q url.Values, namespace string) url.Values {
	if namespace != "" {
		q.Set("resource_reference_key.type", "NAMESPACE")
		q.Set("resource_reference_key.id", namespace)
	}
	return q
}

func (a v1api) findPipelineRaw(ctx context.Context, name, namespace string) (*v1Pipeline, error) {
	return findNamed(ctx, a.c, "find pipeline", v1Prefix+"/pipelines", v1ScopeNamespace(findQuery(v1FilterEquals, "name", name), namespace),
		func(l *v1ListPipelines) []v1Pipeline { return l.Pipelines }, func(p *v1Pipeline) string { return p.Name },
		name, fmt.Sprintf("no pipeline named %q", name))
}

func (a v1api) findPipeline(ctx context.Context, name, namespace string) (*Pipeline, error) {
	p, err := a.findPipelineRaw(ctx, name, namespace)
	if err != nil {
		return nil, err
	}
	return v1PipelineOut(*p), nil
}

func (a v1api) findVersion(ctx context.Context, pipelineID, name string) (*PipelineVersion, error) {
	q := findQuery(v1FilterEquals, "name", name)
	q.Set("resource_key.type", "PIPELINE")
	q.Set("resource_key.id", pipelineID)
	v, err := findNamed(ctx, a.c, "find pipeline version", v1Prefix+"/pipeline_versions", q,
		func(l *v1ListVersions) []v1PipelineVersion { return l.Versions }, func(v *v1PipelineVersion) string { return v.Name },
		name, fmt.Sprintf("pipeline %s has no version named %q", pipelineID, name))
	if err != nil {
		return nil, err
	}
	return v1VersionOut(*v, pipelineID), nil
}

func (a v1api) createExperiment(ctx context.Context, name, description, namespace string) (*Experiment, error) {
	req := v1ExperimentReq{Name: name, Description: description}
	if namespace != "" {
		req.ResourceReferences = []v1ResourceRef{{Key: v1ResourceKey{Type: "NAMESPACE", ID: namespace}, Relationship: "OWNER"}}
	}
	var out v1Experiment
	cl, err := jsonCall("create experiment", http.MethodPost, v1Prefix+"/experiments", req, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = lookupFound(func(ctx context.Context) (*Experiment, error) { return a.findExperiment(ctx, name, namespace) },
		func(e *Experiment) {
			out = v1Experiment{ID: e.ID, Name: e.Name, Description: e.Description, CreatedAt: ArgoTime{e.CreatedAt}}
		})
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	return v1ExperimentOut(out, namespace), nil
}

func (a v1api) findExperiment(ctx context.Context, name, namespace string) (*Experiment, error) {
	e, err := findNamed(ctx, a.c, "find experiment", v1Prefix+"/experiments", v1ScopeNamespace(findQuery(v1FilterEquals, "name", name), namespace),
		func(l *v1ListExperiments) []v1Experiment { return l.Experiments }, func(e *v1Experiment) string { return e.Name },
		name, fmt.Sprintf("no experiment named %q", name))
	if err != nil {
		return nil, err
	}
	return v1ExperimentOut(*e, namespace), nil
}

// paramString renders a parameter value the way v1 carries it (all strings).
func paramString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "true"
		}
		return "false"
	case float64:
		return fmt.Sprintf("%v", x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (a v1api) createRun(ctx context.Context, r RunRequest, namespace string) (*Run, error) {
	if len(r.PipelineSpec) > 0 {
		return nil, invalid("create run", a.c.base.String(), "an inline IR pipeline spec needs the v2beta1 API (v1 takes an Argo workflow manifest)")
	}
	req := v1RunReq{Name: r.Name, Description: r.Description, ServiceAccount: r.ServiceAccount, PipelineSpec: &v1PipelineSpec{}}
	if r.ExperimentID != "" {
		req.ResourceReferences = append(req.ResourceReferences, v1ResourceRef{Key: v1ResourceKey{Type: "EXPERIMENT", ID: r.ExperimentID}, Relationship: "OWNER"})
	} else if namespace != "" {
		return nil, invalid("create run", a.c.base.String(), "KFP is multi-user: a run needs an experiment")
	}
	if r.VersionID != "" {
		req.ResourceReferences = append(req.ResourceReferences, v1ResourceRef{Key: v1ResourceKey{Type: "PIPELINE_VERSION", ID: r.VersionID}, Relationship: "CREATOR"})
	}
	req.PipelineSpec.PipelineID = r.PipelineID
	if len(r.WorkflowManifest) > 0 {
		wf, err := a.c.compactJSON("workflow manifest", r.WorkflowManifest)
		if err != nil {
			return nil, err
		}
		req.PipelineSpec.WorkflowManifest = string(wf)
	}
	keys := make([]string, 0, len(r.Parameters))
	for k := range r.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.PipelineSpec.Parameters = append(req.PipelineSpec.Parameters, v1Parameter{Name: k, Value: paramString(r.Parameters[k])})
	}
	var out v1RunDetail
	cl, err := jsonCall("create run", http.MethodPost, v1Prefix+"/runs", req, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = createdRunLookup(a.listRuns, r, namespace, func(run *Run) {
		out = v1RunDetail{Run: v1Run{ID: run.ID, Name: run.Name, Status: run.RawState, Description: run.Description,
			CreatedAt: ArgoTime{run.CreatedAt}, ResourceReferences: []v1ResourceRef{{Key: v1ResourceKey{Type: "EXPERIMENT", ID: run.ExperimentID}}}}}
	})
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	run := v1RunOut(out.Run)
	return &run, nil
}

func (a v1api) getRun(ctx context.Context, id string) (*RunDetail, error) {
	var out v1RunDetail
	cl, _ := jsonCall("get run", http.MethodGet, v1Prefix+"/runs/"+url.PathEscape(id), nil, &out)
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	wf, err := DecodeWorkflowManifest(out.PipelineRuntime.WorkflowManifest)
	if err != nil {
		return nil, &APIError{Op: "get run", Method: cl.method, Endpoint: a.c.endpoint(cl), StatusCode: 200, Kind: ErrUpstream, Cause: err, Message: err.Error()}
	}
	d := &RunDetail{Run: v1RunOut(out.Run), Workflow: wf}
	d.Status = statusFromWorkflow(out.Run.ID, out.Run.Status, wf)
	if d.Status.Message == "" {
		d.Status.Message = out.Run.Error
	}
	if d.Status.FinishedAt.IsZero() {
		d.Status.FinishedAt = out.Run.FinishedAt.Time
	}
	return d, nil
}

func (a v1api) listRuns(ctx context.Context, r ListRunsRequest, namespace string) ([]Run, string, error) {
	// A run's experiment implies its namespace: v1 takes one resource reference key.
	q := url.Values{}
	if r.ExperimentID != "" {
		q.Set("resource_reference_key.type", "EXPERIMENT")
		q.Set("resource_reference_key.id", r.ExperimentID)
	} else {
		v1ScopeNamespace(q, namespace)
	}
	return listRunsPage(ctx, a.c, v1Prefix+"/runs", listRunsQuery(q, r, v1FilterEquals, "name"),
		func(l *v1ListRuns) ([]v1Run, string) { return l.Runs, l.NextPageToken }, v1RunOut)
}

func (a v1api) terminateRun(ctx context.Context, id string) error {
	cl, _ := jsonCall("terminate run", http.MethodPost, v1Prefix+"/runs/"+url.PathEscape(id)+"/terminate", nil, nil)
	// Terminating twice is harmless, so a retry after an ambiguous failure is safe.
	cl.idempotent = true
	return a.c.do(ctx, cl)
}

func v1PipelineOut(p v1Pipeline) *Pipeline {
	out := &Pipeline{ID: p.ID, Name: p.Name, DisplayName: p.Name, Description: p.Description, CreatedAt: p.CreatedAt.Time}
	if p.DefaultVersion != nil {
		out.DefaultVersionID = p.DefaultVersion.ID
	}
	for _, r := range p.ResourceReferences {
		if r.Key.Type == "NAMESPACE" {
			out.Namespace = r.Key.ID
		}
	}
	return out
}

func v1VersionOut(v v1PipelineVersion, pipelineID string) *PipelineVersion {
	out := &PipelineVersion{ID: v.ID, PipelineID: pipelineID, Name: v.Name, DisplayName: v.Name, Description: v.Description, CreatedAt: v.CreatedAt.Time}
	for _, r := range v.ResourceReferences {
		if r.Key.Type == "PIPELINE" && r.Key.ID != "" {
			out.PipelineID = r.Key.ID
		}
	}
	return out
}

// v1ExperimentOut converts a v1 experiment; namespace (the one the request was made in) stands
// in when the answer carries no namespace reference.
func v1ExperimentOut(e v1Experiment, namespace string) *Experiment {
	out := &Experiment{ID: e.ID, Name: e.Name, Description: e.Description, CreatedAt: e.CreatedAt.Time}
	for _, r := range e.ResourceReferences {
		if r.Key.Type == "NAMESPACE" {
			out.Namespace = r.Key.ID
		}
	}
	if out.Namespace == "" {
		out.Namespace = namespace
	}
	return out
}

func v1RunOut(r v1Run) Run {
	out := Run{ID: r.ID, Name: r.Name, Description: r.Description, RawState: r.Status, State: normalizeArgoPhase(r.Status),
		Error: r.Error, CreatedAt: r.CreatedAt.Time, FinishedAt: r.FinishedAt.Time}
	if r.PipelineSpec != nil {
		out.PipelineID = r.PipelineSpec.PipelineID
	}
	for _, ref := range r.ResourceReferences {
		switch ref.Key.Type {
		case "EXPERIMENT":
			out.ExperimentID = ref.Key.ID
		case "PIPELINE_VERSION":
			out.VersionID = ref.Key.ID
		}
	}
	return out
}
