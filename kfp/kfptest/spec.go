package kfptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// SpecDirEnv overrides where the KFP swagger files are looked for.
const SpecDirEnv = "KFBRIDGE_KFP_SPECS"

// FindSpecDir locates shared/specs/kfp: $KFBRIDGE_KFP_SPECS, else the first "shared/specs/kfp"
// found walking up from the working directory (the repo keeps shared/ beside its checkout).
func FindSpecDir() (string, error) {
	if d := os.Getenv(SpecDirEnv); d != "" {
		if _, err := os.Stat(filepath.Join(d, "v1beta1", "kfp_api_single_file.swagger.json")); err != nil {
			return "", fmt.Errorf("kfptest: %s=%s: %w", SpecDirEnv, d, err)
		}
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kfptest: find specs: %w", err)
	}
	for {
		cand := filepath.Join(dir, "shared", "specs", "kfp")
		if _, err := os.Stat(filepath.Join(cand, "v1beta1", "kfp_api_single_file.swagger.json")); err == nil {
			return cand, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kfptest: shared/specs/kfp not found above the working directory (set " + SpecDirEnv + ")")
		}
		dir = parent
	}
}

// spec is one API version's swagger, converted to OpenAPI 3, with its router.
type spec struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	specCacheMu sync.Mutex
	specCache   = map[string]*spec{}
)

// loadSpec loads <dir>/<version>/kfp_api_single_file.swagger.json once per process.
// Object schemas that list properties are closed (additionalProperties: false): KFP accepts
// unknown and camelCase fields silently, and the point of the contract tests is to catch a
// client that sends a field under the wrong name.
func loadSpec(dir, version string) (*spec, error) {
	key := dir + "|" + version
	specCacheMu.Lock()
	defer specCacheMu.Unlock()
	if s, ok := specCache[key]; ok {
		return s, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, version, "kfp_api_single_file.swagger.json"))
	if err != nil {
		return nil, fmt.Errorf("kfptest: load %s swagger: %w", version, err)
	}
	var d2 openapi2.T
	if err := json.Unmarshal(b, &d2); err != nil {
		return nil, fmt.Errorf("kfptest: parse %s swagger: %w", version, err)
	}
	d3, err := openapi2conv.ToV3(&d2)
	if err != nil {
		return nil, fmt.Errorf("kfptest: convert %s swagger: %w", version, err)
	}
	closeSchemas(d3)
	r, err := gorillamux.NewRouter(d3)
	if err != nil {
		return nil, fmt.Errorf("kfptest: route %s swagger: %w", version, err)
	}
	s := &spec{doc: d3, router: r}
	specCache[key] = s
	return s, nil
}

func closeSchemas(d *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			f := false
			s.AdditionalProperties.Has = &f
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, x := range s.AllOf {
			walk(x)
		}
		for _, x := range s.OneOf {
			walk(x)
		}
		for _, x := range s.AnyOf {
			walk(x)
		}
	}
	if d.Components != nil {
		for _, s := range d.Components.Schemas {
			walk(s)
		}
		for _, rb := range d.Components.RequestBodies {
			if rb.Value != nil {
				for _, mt := range rb.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
	for _, item := range d.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema)
				}
			}
			for _, resp := range op.Responses.Map() {
				if resp.Value != nil {
					for _, mt := range resp.Value.Content {
						walk(mt.Schema)
					}
				}
			}
		}
	}
}

var validationOpts = &openapi3filter.Options{
	AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	MultiError:         true,
}

// validateRequest checks r (path already stripped of any prefix) against the swagger. It reads
// and restores the body.
func (s *spec) validateRequest(ctx context.Context, r *http.Request, body []byte) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: not in the swagger: %w", r.Method, r.URL.Path, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: validationOpts}
	err = openapi3filter.ValidateRequest(ctx, in)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return in, fmt.Errorf("%s %s (%s): %w", r.Method, r.URL.Path, route.Operation.OperationID, err)
	}
	return in, nil
}

// validateResponse checks a 2xx answer of the fake itself, so the client is tested against
// swagger-shaped responses and not against the fake's guesses.
func validateResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, status int, h http.Header, body []byte) error {
	if in == nil || status < 200 || status > 299 {
		return nil
	}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Options: validationOpts,
	})
	if err != nil {
		return fmt.Errorf("fake response to %s %s: %w", in.Request.Method, in.Request.URL.Path, err)
	}
	return nil
}
