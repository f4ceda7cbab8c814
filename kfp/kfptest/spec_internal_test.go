package kfptest

import (
	"context"
	"net/http"
	"os"
	"testing"
)

// TestResponseValidation proves the fake's own answers are checked: a body that breaks the
// swagger (wrong type, unknown field) is reported.
func TestResponseValidation(t *testing.T) {
	dir, err := FindSpecDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	sp, err := loadSpec(dir, "v2beta1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://fake/apis/v2beta1/healthz", nil)
	in, err := sp.validateRequest(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if err := validateResponse(context.Background(), in, 200, h, []byte(`{"multi_user":true,"pipeline_store":"database"}`)); err != nil {
		t.Fatalf("valid answer rejected: %v", err)
	}
	for _, bad := range []string{`{"multi_user":"yes"}`, `{"multiUser":true}`} {
		if err := validateResponse(context.Background(), in, 200, h, []byte(bad)); err == nil {
			t.Errorf("invalid answer %s accepted", bad)
		}
	}
}
