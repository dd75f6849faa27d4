# Sluice: make help lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Built test tools (MinIO, grpcurl) live here, reused between runs.
export SLUICE_TOOLS_DIR ?= $(HOME)/.cache/sluice/tools
TOOLS_DIR := $(SLUICE_TOOLS_DIR)
# buf breaking compares the API with the released one, committed as an image
# (in CI's fresh clone main is the change itself, so comparing with it would
# prove nothing). Moving it is a deliberate commit: make api-baseline.
API_BASELINE := api/released.binpb
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(TOOLS_DIR)/minio $(TOOLS_DIR)/grpcurl $(TOOLS_DIR)/s5cmd $(TOOLS_DIR)/checkrules $(TOOLS_DIR)/duckdb/.installed $(TOOLS_DIR)/axe/.installed ## Build the pinned test tools (MinIO, grpcurl, s5cmd, checkrules, DuckDB for Node, axe-core) into $(SLUICE_TOOLS_DIR)

# checkrules checks the alert rules with Prometheus's rule library; its
# module is its own (tools/rules), since Prometheus's dependencies would
# move the versions MinIO builds with.
$(TOOLS_DIR)/checkrules: tools/rules/go.mod tools/rules/go.sum tools/rules/checkrules/main.go
	@mkdir -p $(TOOLS_DIR)
	@cd tools/rules && ver=$$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)-$$(cksum checkrules/main.go | cut -d' ' -f1) && \
	 if [ -x $@ ] && [ "$$(cat $@.version 2>/dev/null)" = "$$ver" ]; then touch $@; exit 0; fi && \
	 echo "building checkrules (Prometheus $$ver) into $(TOOLS_DIR)" && \
	 GOBIN=$(TOOLS_DIR) go install ./checkrules && echo $$ver > $@.version

# axe-core, pinned in tools/axe, checks the console's pages for accessibility
# in the browser test.
$(TOOLS_DIR)/axe/.installed: tools/axe/package.json tools/axe/package-lock.json
	@mkdir -p $(TOOLS_DIR)/axe
	@if [ -f $@ ] && cmp -s tools/axe/package-lock.json $(TOOLS_DIR)/axe/package-lock.json; then touch $@; exit 0; fi; \
	 echo "installing axe-core into $(TOOLS_DIR)/axe"; \
	 cp tools/axe/package.json tools/axe/package-lock.json $(TOOLS_DIR)/axe/ && \
	 cd $(TOOLS_DIR)/axe && npm ci --no-audit --no-fund --loglevel=error && touch .installed

# DuckDB for Node, pinned in tools/duckdb, reads format output back in tests.
$(TOOLS_DIR)/duckdb/.installed: tools/duckdb/package.json tools/duckdb/package-lock.json
	@mkdir -p $(TOOLS_DIR)/duckdb
	@if [ -f $@ ] && cmp -s tools/duckdb/package-lock.json $(TOOLS_DIR)/duckdb/package-lock.json; then touch $@; exit 0; fi; \
	 echo "installing DuckDB for Node into $(TOOLS_DIR)/duckdb"; \
	 cp tools/duckdb/package.json tools/duckdb/package-lock.json $(TOOLS_DIR)/duckdb/ && \
	 cd $(TOOLS_DIR)/duckdb && npm ci --no-audit --no-fund --loglevel=error && touch .installed

# Polars for Node, pinned in tools/polars, is the encode benchmark's
# fastest anchor; only `make bench` needs it.
$(TOOLS_DIR)/polars/.installed: tools/polars/package.json tools/polars/package-lock.json
	@mkdir -p $(TOOLS_DIR)/polars
	@if [ -f $@ ] && cmp -s tools/polars/package-lock.json $(TOOLS_DIR)/polars/package-lock.json; then touch $@; exit 0; fi; \
	 echo "installing Polars for Node into $(TOOLS_DIR)/polars"; \
	 cp tools/polars/package.json tools/polars/package-lock.json $(TOOLS_DIR)/polars/ && \
	 cd $(TOOLS_DIR)/polars && npm ci --no-audit --no-fund --loglevel=error && touch .installed

# A tool is rebuilt when tools/go.mod pins another version than the one built.
$(TOOLS_DIR)/%: tools/go.mod tools/go.sum
	@mkdir -p $(TOOLS_DIR)
	@cd tools && pkg=$$(go list -f '{{.ImportPath}}' tool | grep -E '/$*(/v[0-9]+)?$$') && \
	 mod=$$(go list -f '{{.Module.Path}}' $$pkg) && ver=$$(go list -m -f '{{.Version}}' $$mod) && \
	 if [ -x $@ ] && [ "$$(cat $@.version 2>/dev/null)" = "$$ver" ]; then touch $@; exit 0; fi && \
	 echo "building $$pkg@$$ver into $(TOOLS_DIR) (minutes the first time, then cached)" && \
	 GOBIN=$(TOOLS_DIR) go install $$pkg && echo $$ver > $@.version

.PHONY: gen
gen: ## Regenerate gen/ and the API descriptor set from proto/
	go tool buf generate
	go tool buf build -o pkg/apidescriptor/sluice.binpb

.PHONY: gen-check
gen-check: gen ## Fail when gen/ is not what the protos generate
	@if [ -n "$$(git status --porcelain -- gen pkg/apidescriptor)" ]; then \
	  git status --porcelain -- gen pkg/apidescriptor; \
	  echo "gen/ is stale: run 'make gen' and commit the result"; exit 1; fi

.PHONY: api-baseline
api-baseline: ## Record the current API as the released one that buf breaking guards (commit it on its own)
	@mkdir -p $(dir $(API_BASELINE))
	go tool buf build --exclude-source-info -o $(API_BASELINE)

.PHONY: lint
lint: ## buf lint and breaking, gofmt, go vet
	go tool buf lint
	go tool buf breaking --against $(API_BASELINE)
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	 if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	go vet ./...

.PHONY: build
build: ## Build bin/sluice, the three service binaries and the console
	go build -o bin/ ./cmd/sluice ./services/credential/cmd/sluice-credential ./services/destination/cmd/sluice-destination ./services/delivery/cmd/sluice-delivery ./services/console/cmd/sluice-console

HTMX_VERSION := 2.0.11
HTMX_SHA256 := d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717

.PHONY: screenshots
screenshots: tools ## Take the console's screenshots in docs/console (the browser test, in Debian's chromium)
	SLUICE_SCREENSHOTS=$(CURDIR)/docs/console go test -count=1 -run TestConsoleInABrowser ./cmd/sluice

.PHONY: vendor-htmx
vendor-htmx: ## Fetch htmx again from the npm registry into the console's static files, checking its sum
	rm -rf $(CURDIR)/.cache/htmx && mkdir -p $(CURDIR)/.cache/htmx
	cd $(CURDIR)/.cache/htmx && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null && tar xzf htmx.org-$(HTMX_VERSION).tgz
	echo "$(HTMX_SHA256)  $(CURDIR)/.cache/htmx/package/dist/htmx.min.js" | sha256sum -c -
	cp $(CURDIR)/.cache/htmx/package/dist/htmx.min.js services/console/static/htmx.min.js

.PHONY: manifests
manifests: ## Build the Kubernetes kustomizations and check every resource against the Kubernetes API's types
	cd tools/k8s && go run ./checkmanifests ../../deploy/k8s/base ../../deploy/k8s/overlays/production

.PHONY: test
test: tools manifests ## Run every test, with real MinIO, moto and PostgreSQL, and check the manifests
	go test $(GO_TEST_FLAGS) -v ./... | grep -vE '^=== (RUN|PAUSE|CONT|NAME)'

.PHONY: bench
bench: tools $(TOOLS_DIR)/polars/.installed ## Run the benchmarks and print their figures
	go test -run '^$$' -bench . -benchmem -timeout 30m $$(go list ./... | grep -v /pkg/arrowfmt)
	@# Each format run writes the whole 1M-row dataset: three runs each.
	go test -run '^$$' -bench Formats -benchtime 3x -timeout 30m ./pkg/arrowfmt
	@# Deliveries end to end: services as processes on MinIO, beside s5cmd and DuckDB.
	go run ./cmd/sluice-bench

.PHONY: serve
serve: ## Run the three services in one process (state in .data/)
	go run ./cmd/sluice serve

.PHONY: trace-picture
trace-picture: tools ## Run the demo and draw its delivery's trace into docs/delivery-trace.png
	go run ./cmd/sluice demo --log-level error --trace-png docs/delivery-trace.png

.PHONY: demo
demo: tools ## Run Sluice end to end on the embedded defaults against a local MinIO
	go run ./cmd/sluice demo
