# kvd's build. `make test` is the one test command; CI runs it through .ci/run.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Pinned code generators, installed into ./bin by `make tools`.
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# Pinned linter, installed into ./bin by `make check`.
STATICCHECK_VERSION := v0.8.2

TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build run certs etcdctl test browser-deps console-test check staticcheck unit unsafe-controls fuzz-short proto proto-check tools lint fmt vet buf-lint buf-breaking clean jepsen jepsen-short jepsen-deps jepsen-bin

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kvd ./cmd/kvd
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kvctl ./cmd/kvctl
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kvdutil ./cmd/kvdutil

run:
	$(GO) run ./cmd/kvd

# certs makes a CA and the TLS certificates of a test cluster with Go's
# crypto (kvdutil certs): CERTS_DIR/ca.crt, NAME.crt, NAME-peer.crt,
# client.crt and their keys. Running it again reuses the CA and rotates the
# rest. CERTS_HOSTS adds SANs ({name} is the member's name).
CERTS_DIR ?= certs
CERTS_MEMBERS ?= n1,n2,n3
CERTS_HOSTS ?=
certs:
	$(GO) run ./cmd/kvdutil certs --dir $(CERTS_DIR) --members $(CERTS_MEMBERS) $(if $(CERTS_HOSTS),--hosts '$(CERTS_HOSTS)')

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# proto regenerates the committed Go code from proto/, and from etcd's
# lock and election schemas in etcdapi/proto (see its buf.yaml).
proto: tools
	buf format -w
	buf lint
	buf generate
	cd etcdapi/proto && $(BIN)/buf generate --path v3lockpb --path v3electionpb

# proto-check fails when the committed generated code differs from what the
# schemas generate now.
proto-check: tools
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	buf generate -o "$$tmp" && \
	if ! diff -r -x '*.proto' "$$tmp/proto" proto; then \
		echo "generated protobuf code is stale: run 'make proto' and commit"; exit 1; fi
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd etcdapi/proto && $(BIN)/buf generate --path v3lockpb --path v3electionpb -o "$$tmp") && \
	if ! diff -r -x '*.proto' "$$tmp" etcdapi/proto -x '*.yaml'; then \
		echo "generated protobuf code of etcdapi/proto is stale: run 'make proto' and commit"; exit 1; fi

buf-lint: tools
	buf lint
	buf format -d --exit-code

# buf-breaking compares the schemas with main. On main itself (or in a clone
# without a main branch) there is nothing to compare with.
buf-breaking: tools
	@if git rev-parse -q --verify refs/heads/main >/dev/null && \
	    [ "$$(git rev-parse HEAD)" != "$$(git rev-parse refs/heads/main)" ]; then \
		buf breaking --against '.git#branch=main'; \
	elif git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		buf breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no earlier schema to compare with"; fi

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck with its default checks (nothing is switched off).
staticcheck: $(BIN)/staticcheck
	staticcheck ./...

lint: fmt vet staticcheck buf-lint buf-breaking

# check is the inner loop, about two minutes: formatting, vet, staticcheck
# and the tests without the slow ones (testing.Short) and without the race
# detector. `make test` is what a change must pass.
CHECK_TEST_FLAGS ?= -short -count=1 -timeout 5m
check: fmt vet staticcheck
	$(GO) test $(CHECK_TEST_FLAGS) ./...

# unit includes the end-to-end tests, whose etcdctl test (e2e/etcdctl_test.go)
# runs the etcdctl that `make etcdctl` builds.
unit: etcdctl
	KVD_E2E_ETCDCTL=$(ETCDCTL) $(GO) test $(TEST_FLAGS) ./...

# etcdctl 3.7 from the Go module proxy. Its own go.mod has replace
# directives, so `go install` refuses it; the scratch module tools/etcdctl
# requires it (go.sum pins every dependency) and builds it as a tool. Rebuilt
# only when that module changes.
ETCDCTL := $(BIN)/etcdctl
etcdctl: $(ETCDCTL)
$(ETCDCTL): tools/etcdctl/go.mod tools/etcdctl/go.sum
	cd tools/etcdctl && $(GO) build -trimpath -o $@ go.etcd.io/etcd/etcdctl/v3

# Controls: the same tests against deliberately broken behaviour that only a
# kvd_unsafe build has, to show that they catch it.
unsafe-controls:
	$(GO) test $(TEST_FLAGS) -tags kvd_unsafe -run 'Control$$' ./server/

# Each fuzz target for FUZZTIME, on top of the seed corpus that unit runs
# (testdata/fuzz). Longer runs: make fuzz-short FUZZTIME=10m. Go 1.26's
# fuzzing engine can fail a run with a bare "context deadline exceeded"
# when -fuzztime ends while a worker is busy (golang/go#75804, fixed in Go
# 1.27): such a run, which found no input, is run once more; any other
# failure, or a failing input written, fails at once.
FUZZTIME ?= 8s
FUZZ_TARGETS = ./fsm:FuzzValidatedRequestsApply ./fsm:FuzzAuthCommandsApply ./fsm:FuzzLoadAuth ./fsm:FuzzDecodeResult \
	./rpc:FuzzRequestValidators ./internal/auth:FuzzCheck ./internal/auth:FuzzVerify \
	./internal/mvcc:FuzzHistoryKey ./cmd/kvctl:FuzzParseTxn
fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== fuzz $$name ($$pkg, $(FUZZTIME))"; \
		for attempt in 1 2; do \
			out=$$(mktemp); \
			if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then cat $$out; rm -f $$out; break; fi; \
			cat $$out; \
			if [ $$attempt = 1 ] && grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
				echo "== fuzz $$name stopped on Go's -fuzztime race (golang/go#75804), not on an input: once more"; rm -f $$out; continue; \
			fi; \
			rm -f $$out; exit 1; \
		done; \
	done

test: proto-check lint browser-deps unit unsafe-controls fuzz-short compose-test jepsen-short

# browser-deps installs Debian's chromium for the console's browser tests
# (console/browser_test.go), which skip, saying so, where it is missing.
browser-deps:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "browser-deps: no Chromium and cannot install it (needs root and apt-get): the console's browser tests will skip"; fi

# console-test runs the console's tests, the browser ones included
# (screenshots go to KVD_ARTIFACTS when set).
console-test: browser-deps
	$(GO) test $(TEST_FLAGS) ./console/

clean:
	rm -rf $(BIN)

# bench-compare measures kvd next to etcd 3.6 (started by $(ETCD_PEER)) on
# this machine and prints the tables of docs/performance.md (puts and gets;
# watches, leases and locks), in about six minutes on an idle machine (plus
# building etcd the first time). It is not part of `make test`.
# BENCH_COMPARE_FLAGS="--idle-leases 100000" adds the 100,000-lease CPU row.
# Add the scale measurements with
# BENCH_COMPARE_FLAGS="--profile --scale 1000000" (about ten minutes more).
.PHONY: bench-compare
ETCD_PEER ?= ../shared/peers/etcd
BENCH_COMPARE_FLAGS ?= --profile
bench-compare: build
	$(GO) run ./bench/compare --kvd $(BIN)/kvd --kvctl $(BIN)/kvctl --etcd $(ETCD_PEER) $(BENCH_COMPARE_FLAGS)

# ---- k8s: an unchanged kube-apiserver on kvd through the etcd v3 API.
# kube-apiserver 1.37 from the Go module proxy: k8s.io/kubernetes replaces
# its k8s.io/* staging modules with ./staging/..., which a dependency cannot
# do, so the scratch module tools/k8s replaces each with its published
# v0.37 version. The build takes about twelve minutes on two cores, so k8s
# is not part of make test; the binary is rebuilt only when tools/k8s
# changes. TestKubeAPIServer (e2e/k8s_test.go) starts it on a three-member
# kvd; KVD_E2E_ETCD=path/to/etcd runs the same test on etcd.
.PHONY: k8s kube-apiserver
KUBE_APISERVER := $(BIN)/kube-apiserver
KUBE_VERSION = $(shell cd tools/k8s && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
KUBE_MINOR = $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS = -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR))
kube-apiserver: $(KUBE_APISERVER)
$(KUBE_APISERVER): tools/k8s/go.mod tools/k8s/go.sum
	cd tools/k8s && nice -n 10 $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-apiserver
k8s: $(KUBE_APISERVER)
	KVD_E2E_KUBE_APISERVER=$(KUBE_APISERVER) $(GO) test -race -count=1 -timeout 20m -v -run '^TestKubeAPIServer$$' ./e2e/
# bench-security: the cost of TLS and of auth per request, kvd next to etcd
# (each plain, with mutual TLS on both ports, and with mutual TLS and auth,
# the same certificates for both; etcd started from the peers script's
# binaries with its TLS flags), in about five minutes.
.PHONY: bench-security
bench-security: build
	$(GO) run ./bench/compare --kvd $(BIN)/kvd --kvctl $(BIN)/kvctl --etcd $(ETCD_PEER) --security $(BENCH_COMPARE_FLAGS)

# ---- jepsen: real kvd processes in network namespaces, faults, checked histories.
# Needs root (network namespaces, iptables); see docs/jepsen.md.
JEPSEN_RUNS ?= $(CURDIR)/jepsen/runs
JEPSEN_FLAGS ?=
# One run: its own bound on top of the harness's, SIGTERM first (the harness
# tears down on it), SIGKILL 30s later.
JEPSEN_RUN = timeout -k 30s $(1) $(BIN)/jepsen --kvd $(BIN)/kvd -q $(JEPSEN_FLAGS)

jepsen-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "jepsen: needs root (network namespaces, iptables); run as root"; exit 1; fi
	@command -v ip >/dev/null || (apt-get update && apt-get install -y iproute2)
	@command -v iptables >/dev/null || (apt-get update && apt-get install -y iptables)

# The release kvd, the negative-control kvd (-tags kvd_unsafe) and the harness.
jepsen-bin:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kvd ./cmd/kvd
	CGO_ENABLED=0 $(GO) build -tags kvd_unsafe -o $(BIN)/kvd-unsafe ./cmd/kvd
	$(GO) build -o $(BIN)/jepsen ./jepsen

# The negative control: stale local reads while the leader is isolated must
# be reported as not linearizable, or the test fails; the same schedule on
# the release build must pass.
JEPSEN_NEGATIVE = KVD_JEPSEN_LIVE=1 KVD_JEPSEN_KVD=$(BIN)/kvd KVD_JEPSEN_KVD_UNSAFE=$(BIN)/kvd-unsafe KVD_JEPSEN_RUNS=$(JEPSEN_RUNS) \
	$(GO) test -count=1 -timeout 4m -run '^TestNegativeControl$$' ./jepsen/runner
# The watch negative control: a build that drops every 97th watch event
# must be reported as missing events, the release build must pass.
JEPSEN_WATCH_NEGATIVE = KVD_JEPSEN_LIVE=1 KVD_JEPSEN_KVD=$(BIN)/kvd KVD_JEPSEN_KVD_UNSAFE=$(BIN)/kvd-unsafe KVD_JEPSEN_RUNS=$(JEPSEN_RUNS) \
	$(GO) test -count=1 -timeout 4m -run '^TestWatchNegativeControl$$' ./jepsen/runner

# The lease and lock negative control: a kvd that expires leases after a
# quarter of their TTL must be caught by both checkers, and the lease
# workload must pass on the release build. $(1) selects subtests:
# jepsen-short runs the lease workload on the broken build only (its lock
# and lease runs cover the release build).
JEPSEN_NEGATIVE_LEASE = KVD_JEPSEN_LIVE=1 KVD_JEPSEN_KVD=$(BIN)/kvd KVD_JEPSEN_KVD_UNSAFE=$(BIN)/kvd-unsafe KVD_JEPSEN_RUNS=$(JEPSEN_RUNS) \
	$(GO) test -count=1 -timeout 6m -run '^TestLeaseNegativeControl$$$(1)' ./jepsen/runner

# About 8 minutes: register, set, watch, lock and lease under a
# partition/kill/pause mix, register again with mutual TLS and auth on, then
# the negative controls.
jepsen-short: jepsen-deps jepsen-bin
	$(call JEPSEN_RUN,150s) --workload register --nemesis partition,kill,pause --time-limit 35s --fault-duration 6s --heal-duration 4s
	$(call JEPSEN_RUN,150s) --workload set --nemesis partition,kill,pause --time-limit 35s --fault-duration 6s --heal-duration 4s
	$(call JEPSEN_RUN,150s) --workload watch --nemesis partition,kill,pause --time-limit 30s --fault-duration 6s --heal-duration 4s
	$(call JEPSEN_RUN,150s) --workload lock --nemesis partition,kill,pause --time-limit 15s --fault-duration 6s --heal-duration 4s
	$(call JEPSEN_RUN,150s) --workload lease --nemesis partition,kill,pause --time-limit 15s --fault-duration 6s --heal-duration 4s
	$(call JEPSEN_RUN,150s) --workload register --nemesis partition,kill --time-limit 30s --fault-duration 6s --heal-duration 4s --tls --auth
	$(JEPSEN_NEGATIVE)
	$(JEPSEN_WATCH_NEGATIVE)
	$(call JEPSEN_NEGATIVE_LEASE,/lease_unsafe)

# The full matrix, about 50 minutes: register, set and watch with every
# nemesis family and the mixed schedule, lock and lease with kill, pause
# and partition, register and set with kill and partition under mutual TLS
# and auth, the leader stall of issue 21 (with an operation timeout
# longer than the stall, so that reads queued on the stopped leader are
# still waiting when it resumes), then the negative controls. Every run
# goes ahead; the target fails at the end if any run was not valid.
JEPSEN_WORKLOADS ?= register set watch
JEPSEN_NEMESES ?= kill pause partition member-churn leader-transfer mixed
# The lock and lease workloads, under the faults that hit leases: a lost
# leader (killed, paused, cut off) and the election after it.
JEPSEN_LEASE_WORKLOADS ?= lock lease
JEPSEN_LEASE_NEMESES ?= kill pause partition
# With mutual TLS on both ports and auth on (the workload logged in as a
# user limited to its keys): the workloads that check every write, under a
# lost leader and a partition.
JEPSEN_SECURE_WORKLOADS ?= register set
JEPSEN_SECURE_NEMESES ?= kill partition
JEPSEN_STALL_WORKLOADS ?= register
JEPSEN_STALL_FLAGS ?= --nodes 3 --fault-duration 2s --heal-duration 2s --op-timeout 8s
jepsen: jepsen-deps jepsen-bin
	@failed=""; \
	for w in $(JEPSEN_WORKLOADS); do for n in $(JEPSEN_NEMESES); do \
		echo "== jepsen: $$w / $$n"; \
		$(call JEPSEN_RUN,300s) --workload $$w --nemesis $$n --time-limit 75s || failed="$$failed $$w/$$n"; \
	done; done; \
	for w in $(JEPSEN_LEASE_WORKLOADS); do for n in $(JEPSEN_LEASE_NEMESES); do \
		echo "== jepsen: $$w / $$n"; \
		$(call JEPSEN_RUN,300s) --workload $$w --nemesis $$n --time-limit 75s || failed="$$failed $$w/$$n"; \
	done; done; \
	for w in $(JEPSEN_SECURE_WORKLOADS); do for n in $(JEPSEN_SECURE_NEMESES); do \
		echo "== jepsen: $$w / $$n, TLS and auth"; \
		$(call JEPSEN_RUN,300s) --workload $$w --nemesis $$n --time-limit 75s --tls --auth || failed="$$failed $$w/$$n/tls+auth"; \
	done; done; \
	for w in $(JEPSEN_STALL_WORKLOADS); do \
		echo "== jepsen: $$w / leader-stall"; \
		$(call JEPSEN_RUN,300s) --workload $$w --nemesis leader-stall $(JEPSEN_STALL_FLAGS) --time-limit 75s || failed="$$failed $$w/leader-stall"; \
	done; \
	echo "== jepsen: negative control"; \
	$(JEPSEN_NEGATIVE) || failed="$$failed negative-control"; \
	echo "== jepsen: watch negative control"; \
	$(JEPSEN_WATCH_NEGATIVE) || failed="$$failed watch-negative-control"; \
	$(call JEPSEN_NEGATIVE_LEASE,) || failed="$$failed lease-negative-control"; \
	if [ -n "$$failed" ]; then echo "jepsen: FAILED:$$failed"; exit 1; fi; \
	echo "jepsen: every run valid, negative control caught"

# ---- deploy: the kvd:dev image, a three-member cluster in containers, and
# its test. See deploy/ and docs/kubernetes.md.
.PHONY: docker cluster-up cluster-down compose-test
IMAGE ?= kvd:dev
# The compose v2 plugin when it works, else docker-compose (1.27+).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
CLUSTER_PROJECT ?= kvd
CLUSTER = $(COMPOSE) -p $(CLUSTER_PROJECT) -f deploy/compose/compose.yaml

# The image FROM scratch, from static binaries built here (nothing is pulled).
docker:
	IMAGE=$(IMAGE) GO=$(GO) deploy/docker/build.sh

# The cluster runs with mutual TLS; its certs service makes the certificates
# in a volume (see compose.yaml), and cluster-up copies the CA and a client
# certificate out for kvctl into CLUSTER_CERTS.
CLUSTER_CERTS ?= deploy/compose/certs
cluster-up: docker
	KVD_IMAGE=$(IMAGE) $(CLUSTER) up -d
	@id=$$(docker ps -aq --filter label=com.docker.compose.project=$(CLUSTER_PROJECT) --filter label=com.docker.compose.service=certs); \
	if [ -z "$$id" ]; then echo "cluster-up: no certs container in project $(CLUSTER_PROJECT)" >&2; exit 1; fi; \
	mkdir -p $(CLUSTER_CERTS) && for f in ca.crt client.crt client.key; do \
		docker cp "$$id:/etc/kvd/tls/$$f" $(CLUSTER_CERTS)/$$f || exit 1; done; \
	chmod 600 $(CLUSTER_CERTS)/client.key
	@echo "kvd: --endpoints https://127.0.0.1:17379,https://127.0.0.1:27379,https://127.0.0.1:37379 (probes and metrics on http://127.0.0.1:17381, 27381, 37381)"
	@echo "     --cacert $(CLUSTER_CERTS)/ca.crt --cert $(CLUSTER_CERTS)/client.crt --key $(CLUSTER_CERTS)/client.key"

# Removes the containers, the network and the volumes (and the copied
# client certificates); KEEP_DATA=1 keeps them for the next cluster-up.
cluster-down:
	$(CLUSTER) down --remove-orphans $(if $(KEEP_DATA),,-v)
	$(if $(KEEP_DATA),,rm -rf $(CLUSTER_CERTS))

# Skipped with a notice when Docker is not usable, except under CI=true
# (.ci/run requires Docker).
compose-test:
	@if ! docker info >/dev/null 2>&1; then \
		if [ "$${CI:-}" = true ]; then echo "compose-test: docker is not usable ('docker info' failed); CI requires it" >&2; exit 1; fi; \
		echo "compose-test: SKIPPED: docker is not usable here ('docker info' failed)"; exit 0; fi; \
	$(MAKE) --no-print-directory docker && \
	KVD_COMPOSE_TEST=1 KVD_IMAGE=$(IMAGE) COMPOSE="$(COMPOSE)" $(GO) test -count=1 -timeout 5m -v -run '^TestComposeCluster$$' ./deploy/compose
