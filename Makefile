# kfbridge — common tasks. `make test` is what CI runs (.ci/run).
GO        ?= go
BIN       ?= bin
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
# Tests whose components are missing fail instead of skipping when CI=true.
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: all build demo test test-deps unit fuzz-short bench vet clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The main job on the embedded default: run the example pipeline locally and follow its logs.
demo:
	$(GO) run ./cmd/kfbridge run examples/hello/hello.pipeline

test-deps:
	./scripts/install-test-deps.sh

# The whole suite: installs what it needs, then vet, unit/integration/e2e tests, a bounded fuzz run.
test: test-deps vet unit fuzz-short

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

# CI runs each fuzz target briefly; run longer locally with FUZZTIME=10m.
FUZZTIME ?= 15s
fuzz-short:
	$(GO) test ./pipeline -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./pipeline -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./logstream -run='^$$' -fuzz='^FuzzParseNDJSON$$' -fuzztime=$(FUZZTIME)

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf $(BIN)
