package pipeline

import (
	"container/heap"
	"fmt"
	"strings"
)

// TopoOrder returns the nodes so that every parent comes before its children. Among nodes that are
// ready at the same time, file order wins, so the order is stable for a given file. Parents that
// are not nodes of p are ignored. It returns an error naming the nodes on a cycle.
func TopoOrder(p *Pipeline) ([]*Node, error) {
	if p == nil {
		return nil, fmt.Errorf("topological order: nil pipeline")
	}
	index := map[string]int{}
	for i, n := range p.Nodes {
		if _, dup := index[n.ID]; !dup {
			index[n.ID] = i
		}
	}
	// pending counts the distinct, known parents each node still waits for.
	pending := make([]int, len(p.Nodes))
	children := make([][]int, len(p.Nodes))
	for i, n := range p.Nodes {
		seen := map[int]bool{}
		for _, par := range n.Parents {
			j, ok := index[par]
			if !ok || seen[j] {
				continue
			}
			seen[j] = true
			pending[i]++
			children[j] = append(children[j], i)
		}
	}
	// ready is a min-heap of node indexes, so among ready nodes the earliest in the file wins.
	ready := &intHeap{}
	for i := range p.Nodes {
		if pending[i] == 0 {
			heap.Push(ready, i)
		}
	}
	out := make([]*Node, 0, len(p.Nodes))
	for ready.Len() > 0 {
		next := heap.Pop(ready).(int)
		out = append(out, p.Nodes[next])
		for _, c := range children[next] {
			if pending[c]--; pending[c] == 0 {
				heap.Push(ready, c)
			}
		}
	}
	if len(out) < len(p.Nodes) {
		cyc := findCycle(p)
		names := make([]string, len(cyc))
		for i, id := range cyc {
			names[i] = nodeDisplay(p.Node(id))
		}
		return nil, fmt.Errorf("topological order: the pipeline has a cycle: %s", strings.Join(names, " -> "))
	}
	return out, nil
}

func nodeDisplay(n *Node) string {
	if n == nil {
		return "?"
	}
	if n.Label != "" && n.Label != n.ID {
		return fmt.Sprintf("%q (%s)", n.Label, n.ID)
	}
	return n.ID
}

// findCycle returns the IDs of one cycle (parent before child, first node repeated at the end),
// or nil if the graph is acyclic. Cycles are searched from nodes in file order, so the result is
// deterministic.
func findCycle(p *Pipeline) []string {
	cycles := allCycles(p)
	if len(cycles) == 0 {
		return nil
	}
	return cycles[0]
}

// allCycles returns one cycle per strongly connected component that contains a cycle (a
// self-link counts), each starting at the component's first node in file order and closed by
// repeating it. This is what validation reports: one circularReference issue per knot.
func allCycles(p *Pipeline) [][]string {
	index := map[string]int{}
	for i, n := range p.Nodes {
		if _, dup := index[n.ID]; !dup {
			index[n.ID] = i
		}
	}
	// Edges parent -> child.
	children := make([][]int, len(p.Nodes))
	for i, n := range p.Nodes {
		for _, par := range n.Parents {
			if j, ok := index[par]; ok {
				children[j] = append(children[j], i)
			}
		}
	}
	comp := sccs(len(p.Nodes), children)
	size := map[int]int{}
	for _, c := range comp {
		size[c]++
	}
	var out [][]string
	reported := map[int]bool{}
	for i := range p.Nodes {
		c := comp[i]
		if reported[c] {
			continue
		}
		selfLoop := false
		for _, ch := range children[i] {
			if ch == i {
				selfLoop = true
			}
		}
		if size[c] == 1 && !selfLoop {
			continue
		}
		reported[c] = true
		// Walk inside the component from i back to i (BFS for a shortest cycle).
		prev := map[int]int{}
		queue := []int{i}
		found := false
		for len(queue) > 0 && !found {
			cur := queue[0]
			queue = queue[1:]
			for _, ch := range children[cur] {
				if comp[ch] != c {
					continue
				}
				if ch == i {
					prev[i] = cur
					found = true
					break
				}
				if _, seen := prev[ch]; !seen {
					prev[ch] = cur
					queue = append(queue, ch)
				}
			}
		}
		var rev []string
		rev = append(rev, p.Nodes[i].ID)
		for cur := prev[i]; cur != i; cur = prev[cur] {
			rev = append(rev, p.Nodes[cur].ID)
		}
		rev = append(rev, p.Nodes[i].ID)
		for a, b := 0, len(rev)-1; a < b; a, b = a+1, b-1 {
			rev[a], rev[b] = rev[b], rev[a]
		}
		out = append(out, rev)
	}
	return out
}

// sccs labels the strongly connected components of a graph given as adjacency lists (iterative
// Tarjan, so deep chains from a fuzzer cannot overflow the stack).
func sccs(n int, adj [][]int) []int {
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	for i := range index {
		index[i] = -1
		comp[i] = -1
	}
	var stack []int
	next, ncomp := 0, 0
	type frame struct{ v, edge int }
	for s := 0; s < n; s++ {
		if index[s] >= 0 {
			continue
		}
		call := []frame{{s, 0}}
		index[s], low[s] = next, next
		next++
		stack = append(stack, s)
		onStack[s] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.edge < len(adj[f.v]) {
				w := adj[f.v][f.edge]
				f.edge++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] && index[w] < low[f.v] {
					low[f.v] = index[w]
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				if low[v] < low[u] {
					low[u] = low[v]
				}
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp
}

// Ancestors returns the IDs of every node that id transitively depends on, in topological order
// (file order among independent nodes). The runtime passes every ancestor's outputs to a node as
// its inputs, as Elyra does. Unknown IDs have no ancestors; on a cycle the order is file order.
func Ancestors(p *Pipeline, id string) []string {
	return related(p, id, func(n *Node) []string { return n.Parents })
}

// Descendants returns the IDs of every node that transitively depends on id, in topological
// order (file order among independent nodes, or on a cycle).
func Descendants(p *Pipeline, id string) []string {
	if p == nil {
		return nil
	}
	kids := map[string][]string{}
	for _, n := range p.Nodes {
		for _, par := range n.Parents {
			kids[par] = append(kids[par], n.ID)
		}
	}
	return related(p, id, func(n *Node) []string { return kids[n.ID] })
}

// Children returns the IDs of the nodes that list id as a parent, in file order.
func Children(p *Pipeline, id string) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, n := range p.Nodes {
		for _, par := range n.Parents {
			if par == id {
				out = append(out, n.ID)
				break
			}
		}
	}
	return out
}

func related(p *Pipeline, id string, next func(*Node) []string) []string {
	if p == nil || p.Node(id) == nil {
		return nil
	}
	set := map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 {
		cur := p.Node(queue[0])
		queue = queue[1:]
		if cur == nil {
			continue
		}
		for _, r := range next(cur) {
			if !set[r] && r != id {
				set[r] = true
				queue = append(queue, r)
			}
		}
	}
	order, err := TopoOrder(p)
	if err != nil {
		order = p.Nodes
	}
	var out []string
	for _, n := range order {
		if set[n.ID] {
			out = append(out, n.ID)
			delete(set, n.ID) // duplicate IDs appear once
		}
	}
	return out
}

// intHeap is a min-heap of ints for container/heap.
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
