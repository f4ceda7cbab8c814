package pipeline

import (
	"slices"
	"strings"
	"testing"
)

func graph(edges map[string][]string, order ...string) *Pipeline {
	p := &Pipeline{}
	for _, id := range order {
		p.Nodes = append(p.Nodes, &Node{ID: id, Label: id, Parents: edges[id]})
	}
	return p
}

func ids(ns []*Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func TestTopoOrder(t *testing.T) {
	cases := []struct {
		name  string
		edges map[string][]string
		order []string
		want  []string
	}{
		{"file order when independent", nil, []string{"c", "a", "b"}, []string{"c", "a", "b"}},
		{"child listed first", map[string][]string{"a": {"b"}}, []string{"a", "b", "c"}, []string{"b", "a", "c"}},
		{"diamond", map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"c", "b"}}, []string{"d", "c", "b", "a"}, []string{"a", "c", "b", "d"}},
		// Among ready nodes the earliest in the file wins, even if it became ready later.
		{"stable", map[string][]string{"x": {"z"}}, []string{"x", "y", "z"}, []string{"y", "z", "x"}},
		{"unknown and duplicate parents ignored", map[string][]string{"a": {"ghost", "b", "b"}}, []string{"a", "b"}, []string{"b", "a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := TopoOrder(graph(c.edges, c.order...))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), c.want) {
				t.Errorf("order = %v, want %v", ids(got), c.want)
			}
		})
	}
	_, err := TopoOrder(graph(map[string][]string{"a": {"c"}, "b": {"a"}, "c": {"b"}, "d": {"a"}}, "a", "b", "c", "d"))
	if err == nil || !strings.Contains(err.Error(), "a -> b -> c -> a") {
		t.Errorf("error = %v, want the cycle a -> b -> c -> a", err)
	}
	if _, err := TopoOrder(nil); err == nil {
		t.Error("nil pipeline must be an error")
	}
}

func TestAncestorsDescendants(t *testing.T) {
	// a -> b -> d, a -> c -> d, e independent, f child of d.
	p := graph(map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"c", "b"}, "f": {"d"}}, "f", "d", "e", "c", "b", "a")
	cases := []struct {
		id        string
		anc, desc []string
		children  []string
	}{
		{"a", nil, []string{"c", "b", "d", "f"}, []string{"c", "b"}},
		{"d", []string{"a", "c", "b"}, []string{"f"}, []string{"f"}},
		{"f", []string{"a", "c", "b", "d"}, nil, nil},
		{"e", nil, nil, nil},
		{"ghost", nil, nil, nil},
	}
	for _, c := range cases {
		if got := Ancestors(p, c.id); !slices.Equal(got, c.anc) {
			t.Errorf("Ancestors(%s) = %v, want %v", c.id, got, c.anc)
		}
		if got := Descendants(p, c.id); !slices.Equal(got, c.desc) {
			t.Errorf("Descendants(%s) = %v, want %v", c.id, got, c.desc)
		}
		if got := Children(p, c.id); !slices.Equal(got, c.children) {
			t.Errorf("Children(%s) = %v, want %v", c.id, got, c.children)
		}
	}
	// On a cycle the helpers still terminate and exclude the node itself.
	cyc := graph(map[string][]string{"a": {"b"}, "b": {"a"}}, "a", "b")
	if got := Ancestors(cyc, "a"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Ancestors on a cycle = %v", got)
	}
}

// BenchmarkTopoOrder measures ordering a long chain listed child-first (the worst case of the
// file-order scan).
func BenchmarkTopoOrder(b *testing.B) {
	const n = 500
	edges := map[string][]string{}
	var order []string
	for i := n - 1; i >= 0; i-- {
		id := "n" + itoa(i)
		if i > 0 {
			edges[id] = []string{"n" + itoa(i-1)}
		}
		order = append(order, id)
	}
	p := graph(edges, order...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TopoOrder(p); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
