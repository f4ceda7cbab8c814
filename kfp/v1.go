package kfp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"time"
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

// uploadCall builds the multipart request KFP's upload handlers read: one file part named
// "uploadfile" whose filename ends in .yaml (the server picks the parser by suffix).
func uploadCall(op, path string, q url.Values, r UploadRequest, out any) (*call, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="uploadfile"; filename=%q`, r.Filename))
	h.Set("Content-Type", "application/octet-stream")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	if _, err := pw.Write(r.Content); err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("kfp: %s: %w", op, err)
	}
	return &call{op: op, method: http.MethodPost, path: path, query: q, body: buf.Bytes(), ctype: mw.FormDataContentType(), out: out}, nil
}

func (a v1api) uploadPipeline(ctx context.Context, r UploadRequest) (*Pipeline, *PipelineVersion, error) {
	if r.Namespace != "" {
		return nil, nil, invalid("upload pipeline", a.c.base.String(), "namespaced (private) pipelines need the v2beta1 API")
	}
	q := url.Values{"name": {r.Name}}
	if r.Description != "" {
		q.Set("description", r.Description)
	}
	var out v1Pipeline
	cl, err := uploadCall("upload pipeline", v1Prefix+"/pipelines/upload", q, r, &out)
	if err != nil {
		return nil, nil, err
	}
	cl.lookup = func(ctx context.Context) (bool, error) {
		p, err := a.findPipelineRaw(ctx, r.Name, "")
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
	p := v1PipelineOut(out)
	var v *PipelineVersion
	if out.DefaultVersion != nil {
		v = v1VersionOut(*out.DefaultVersion, out.ID)
	}
	return p, v, nil
}

func (a v1api) uploadVersion(ctx context.Context, pipelineID string, r UploadRequest) (*PipelineVersion, error) {
	q := url.Values{"name": {r.Name}, "pipelineid": {pipelineID}}
	if r.Description != "" {
		q.Set("description", r.Description)
	}
	var out v1PipelineVersion
	cl, err := uploadCall("upload pipeline version", v1Prefix+"/pipelines/upload_version", q, r, &out)
	if err != nil {
		return nil, err
	}
	cl.lookup = func(ctx context.Context) (bool, error) {
		v, err := a.findVersion(ctx, pipelineID, r.Name)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out = v1PipelineVersion{ID: v.ID, Name: v.Name, Description: v.Description, CreatedAt: ArgoTime{v.CreatedAt}}
		return true, nil
	}
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	return v1VersionOut(out, pipelineID), nil
}

func v1FilterEquals(key, value string) string {
	b, _ := json.Marshal(v1Filter{Predicates: []v1Predicate{{Key: key, Op: "EQUALS", StringValue: value}}})
	return string(b)
}

func (a v1api) findPipelineRaw(ctx context.Context, name, namespace string) (*v1Pipeline, error) {
	q := url.Values{"filter": {v1FilterEquals("name", name)}, "page_size": {"10"}}
	if namespace != "" {
		q.Set("resource_reference_key.type", "NAMESPACE")
		q.Set("resource_reference_key.id", namespace)
	}
	var out v1ListPipelines
	cl, _ := jsonCall("find pipeline", http.MethodGet, v1Prefix+"/pipelines", nil, &out)
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

func (a v1api) findPipeline(ctx context.Context, name, namespace string) (*Pipeline, error) {
	p, err := a.findPipelineRaw(ctx, name, namespace)
	if err != nil {
		return nil, err
	}
	return v1PipelineOut(*p), nil
}

func (a v1api) findVersion(ctx context.Context, pipelineID, name string) (*PipelineVersion, error) {
	q := url.Values{
		"resource_key.type": {"PIPELINE"},
		"resource_key.id":   {pipelineID},
		"filter":            {v1FilterEquals("name", name)},
		"page_size":         {"10"},
	}
	var out v1ListVersions
	cl, _ := jsonCall("find pipeline version", http.MethodGet, v1Prefix+"/pipeline_versions", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	for _, v := range out.Versions {
		if v.Name == name {
			return v1VersionOut(v, pipelineID), nil
		}
	}
	return nil, notFound("find pipeline version", a.c.endpoint(cl), fmt.Sprintf("pipeline %s has no version named %q", pipelineID, name))
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
	cl.lookup = func(ctx context.Context) (bool, error) {
		e, err := a.findExperiment(ctx, name, namespace)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out = v1Experiment{ID: e.ID, Name: e.Name, Description: e.Description, CreatedAt: ArgoTime{e.CreatedAt}}
		return true, nil
	}
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	e := v1ExperimentOut(out)
	if e.Namespace == "" {
		e.Namespace = namespace
	}
	return e, nil
}

func (a v1api) findExperiment(ctx context.Context, name, namespace string) (*Experiment, error) {
	q := url.Values{"filter": {v1FilterEquals("name", name)}, "page_size": {"10"}}
	if namespace != "" {
		q.Set("resource_reference_key.type", "NAMESPACE")
		q.Set("resource_reference_key.id", namespace)
	}
	var out v1ListExperiments
	cl, _ := jsonCall("find experiment", http.MethodGet, v1Prefix+"/experiments", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	for _, e := range out.Experiments {
		if e.Name == name {
			x := v1ExperimentOut(e)
			if x.Namespace == "" {
				x.Namespace = namespace
			}
			return x, nil
		}
	}
	return nil, notFound("find experiment", a.c.endpoint(cl), fmt.Sprintf("no experiment named %q", name))
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
		var compact bytes.Buffer
		if err := json.Compact(&compact, r.WorkflowManifest); err != nil {
			return nil, invalid("create run", a.c.base.String(), "workflow manifest: "+err.Error())
		}
		req.PipelineSpec.WorkflowManifest = compact.String()
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
	started := time.Now()
	cl.lookup = func(ctx context.Context) (bool, error) {
		runs, _, err := a.listRuns(ctx, ListRunsRequest{ExperimentID: r.ExperimentID, Name: r.Name, PageSize: 20}, namespace)
		if err != nil {
			return false, err
		}
		if run := pickCreated(runs, r.Name, started); run != nil {
			out = v1RunDetail{Run: v1Run{ID: run.ID, Name: run.Name, Status: run.RawState, Description: run.Description,
				CreatedAt: ArgoTime{run.CreatedAt}, ResourceReferences: []v1ResourceRef{{Key: v1ResourceKey{Type: "EXPERIMENT", ID: run.ExperimentID}}}}}
			return true, nil
		}
		return false, nil
	}
	if err := a.c.do(ctx, cl); err != nil {
		return nil, err
	}
	run := v1RunOut(out.Run)
	return &run, nil
}

// pickCreated returns the run named name that an earlier attempt of this call created: created no
// earlier than the call started (minus slack for clock skew between client and server).
func pickCreated(runs []Run, name string, started time.Time) *Run {
	for i := range runs {
		r := &runs[i]
		if r.Name != name {
			continue
		}
		if r.CreatedAt.IsZero() || !r.CreatedAt.Before(started.Add(-2*time.Minute)) {
			return r
		}
	}
	return nil
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
	q := url.Values{}
	switch {
	case r.ExperimentID != "":
		q.Set("resource_reference_key.type", "EXPERIMENT")
		q.Set("resource_reference_key.id", r.ExperimentID)
	case namespace != "":
		q.Set("resource_reference_key.type", "NAMESPACE")
		q.Set("resource_reference_key.id", namespace)
	}
	if r.Name != "" {
		q.Set("filter", v1FilterEquals("name", r.Name))
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
	var out v1ListRuns
	cl, _ := jsonCall("list runs", http.MethodGet, v1Prefix+"/runs", nil, &out)
	cl.query = q
	if err := a.c.do(ctx, cl); err != nil {
		return nil, "", err
	}
	runs := make([]Run, 0, len(out.Runs))
	for _, x := range out.Runs {
		runs = append(runs, v1RunOut(x))
	}
	return runs, out.NextPageToken, nil
}

func (a v1api) terminateRun(ctx context.Context, id string) error {
	cl, _ := jsonCall("terminate run", http.MethodPost, v1Prefix+"/runs/"+url.PathEscape(id)+"/terminate", nil, nil)
	// Terminating twice is harmless, so a retry after an ambiguous failure is safe.
	cl.idempotent = true
	return a.c.do(ctx, cl)
}

func notFound(op, endpoint, msg string) error {
	return &APIError{Op: op, Method: http.MethodGet, Endpoint: endpoint, StatusCode: 0, Message: msg, Kind: ErrNotFound}
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

func v1ExperimentOut(e v1Experiment) *Experiment {
	out := &Experiment{ID: e.ID, Name: e.Name, Description: e.Description, CreatedAt: e.CreatedAt.Time}
	for _, r := range e.ResourceReferences {
		if r.Key.Type == "NAMESPACE" {
			out.Namespace = r.Key.ID
		}
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
