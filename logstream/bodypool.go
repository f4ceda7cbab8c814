package logstream

import "sync"

// Push bodies are the bulk of what the service allocates under a flood of output (every byte of
// a step's log arrives in one). A fresh body of a few hundred KiB is zeroed by the runtime before
// it is read into, which cost as much as validating it; pooled bodies are reused instead, once the
// ring no longer refers to them.

// bodyClasses are the capacities bodies are pooled by; larger bodies are not pooled.
var bodyClasses = [...]int{64 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20}

var bodyPools [len(bodyClasses)]sync.Pool

// poisonBodies, set by tests, overwrites recycled bodies so that a record still pointing into
// one shows up as garbage instead of going unnoticed.
var poisonBodies bool

// GetBody returns a buffer of length n for a push body, from the pool when one fits. Its bytes
// are not zeroed: the caller overwrites all n of them. Pass it to AppendPooled, which owns it
// from then on.
func GetBody(n int) []byte {
	for i, c := range bodyClasses {
		if n <= c {
			if b, ok := bodyPools[i].Get().(*[]byte); ok {
				return (*b)[:n]
			}
			return make([]byte, n, c)
		}
	}
	return make([]byte, n)
}

// putBody returns a body to its pool (bodies of other capacities are left to the collector).
func putBody(b []byte) {
	for i, c := range bodyClasses {
		if cap(b) == c {
			if poisonBodies {
				b = b[:c]
				for k := range b {
					b[k] = '#'
				}
			}
			b = b[:0]
			bodyPools[i].Put(&b)
			return
		}
	}
}
