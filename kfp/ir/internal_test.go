package ir

import (
	"testing"

	"github.com/kfbridge/kfbridge/pipeline"
)

func TestTypedValue(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		in   any
		want any
	}{
		{pipeline.ParamInteger, float64(10), int64(10)},
		{pipeline.ParamInteger, "10", int64(10)},
		{pipeline.ParamFloat, "0.25", 0.25},
		{pipeline.ParamBool, "true", true},
		{pipeline.ParamBool, false, false},
		{pipeline.ParamFloat, "fast", "fast"},
		{pipeline.ParamString, float64(5), "5"},
		{pipeline.ParamString, "10", "10"},
	} {
		if got := typedValue(tc.typ, tc.in); got != tc.want {
			t.Errorf("typedValue(%s, %#v) = %#v, want %#v", tc.typ, tc.in, got, tc.want)
		}
	}
}
