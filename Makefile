# Raftinel's build, test and demo entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION := v0.8.2
# go test's overall limit; CI has 90 minutes for everything.
TEST_TIMEOUT ?= 30m

.PHONY: help tools redis prometheus haproxy generate checkgenerate lint test test-integration bench bench-failover bench-leader-crash bench-detect bench-sentinel bench-scale bench-switchover build demo ci chaos chaos-deps

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(TOOLS)/buf:
	GOBIN=$(TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/staticcheck ## install the pinned tools into .tools/

redis: ## install redis-server, redis-sentinel and redis-cli from Debian's packages if missing
	@scripts/install-redis.sh

haproxy: ## install haproxy from Debian's package if missing (the HAProxy example's test uses it)
	@scripts/install-haproxy.sh

prometheus: ## install prometheus and promtool from Debian's package if missing (the metrics tests use both)
	@scripts/install-prometheus.sh

generate: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc ## regenerate proto/gen from proto/
	$(TOOLS)/buf generate

checkgenerate: generate ## fail when the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- proto/gen)" ]; then \
		git status --porcelain -- proto/gen; \
		echo "proto/gen is stale: run 'make generate' and commit the result" >&2; exit 1; fi

lint: $(TOOLS)/buf $(TOOLS)/staticcheck ## gofmt, go vet, staticcheck, buf lint and the dependency-direction check
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	go vet ./...
	$(TOOLS)/staticcheck ./...
	$(TOOLS)/buf lint
	scripts/checkdeps.sh

test: redis prometheus haproxy ## every test, with the race detector (redis-server and prometheus processes included)
	go test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-integration: redis prometheus haproxy ## only the multi-process tests with real binaries and redis-server
	go test -race -count=1 -timeout $(TEST_TIMEOUT) ./integration/...

bench: redis ## benchmarks
	go test -run '^$$' -bench . -benchmem ./...

bench-failover: redis build ## failover benchmark, Raftinel against redis-sentinel (flags: BENCH_FLAGS="-runs 3 -faults kill")
	go run ./cmd/bench-failover $(BENCH_FLAGS)

bench-leader-crash: redis build ## failover with its leader killed after the election / the promotion, against redis-sentinel and an uninterrupted kill (BENCH_FLAGS override the defaults)
	go run ./cmd/bench-failover -faults leader-after-election,leader-after-promotion,kill -systems raftinel,sentinel \
		-runs 3 -failover-timeout 5s -raft-timeout 500ms $(BENCH_FLAGS)

bench-detect: redis build ## failure detection against redis-sentinel: first +sdown per fault (kill, stop, debug-sleep) and false failovers of a master restarted 300 ms after SIGKILL (-restart-runs, 20 by default)
	go run ./cmd/bench-failover -faults kill,stop,debug-sleep,restart-300ms -systems raftinel,sentinel -runs 10 $(BENCH_FLAGS)

bench-scale: redis build ## N groups (default 300) watched by 3 Raftinel nodes and by 3 redis-sentinel in the same run: steady-state CPU, memory, Raft entries/s, read latency, mass SIGKILL (BENCH_FLAGS="-groups 1000")
	go run ./cmd/bench-scale $(BENCH_FLAGS)

bench-switchover: redis build ## planned switchover against redis-sentinel (coordinatorctl failover vs SENTINEL FAILOVER, 10 runs each): longest gap between acknowledged writes, lost writes
	go run ./cmd/bench-failover -faults switchover -systems raftinel,sentinel -runs 10 $(BENCH_FLAGS)

bench-sentinel: redis ## SENTINEL get-master-addr-by-name per second: one Raftinel node against redis-sentinel
	scripts/bench-sentinel.sh

chaos-deps: ## install what make chaos needs (iproute2) from Debian's packages if missing
	@scripts/install-chaos.sh

chaos: redis chaos-deps build ## partition scenarios on network namespaces, Raftinel against redis-sentinel, as root (flags: CHAOS_FLAGS="-scenario a,b -runs 10")
	go run ./cmd/chaos $(CHAOS_FLAGS)

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build: ## build bin/coordinator and bin/coordinatorctl; VERSION=... sets the version nodes advertise
	go build -ldflags "-X main.version=$(VERSION)" -o bin/ ./cmd/...

demo: redis build ## a local 3-node cluster with 3 real redis-server processes (SECURE=1: with TLS, tokens and a Sentinel ACL user)
	SECURE=$(SECURE) scripts/demo.sh

ci: redis prometheus haproxy tools chaos-deps checkgenerate lint test ## what CI runs: install, check generated code, lint, test, one run of every chaos scenario
	$(MAKE) chaos CHAOS_FLAGS="-runs 1"
