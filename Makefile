# Tools are pinned here and installed on demand into ./.bin with go install,
# so that nothing but Go (and the module proxy) is needed.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
# Centrifugo, for bench/fanout's comparison (make centrifugo): built from its
# public source, the module github.com/centrifugal/centrifugo/v6 at this tag.
CENTRIFUGO_VERSION         := v6.9.1

BIN     := $(CURDIR)/.bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Each tool is installed once per version: the stamp file names the version,
# so bumping a version above reinstalls it.
BUF                := $(BIN)/.stamp-buf-$(BUF_VERSION)
PROTOC_GEN_GO      := $(BIN)/.stamp-protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
PROTOC_GEN_GO_GRPC := $(BIN)/.stamp-protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
STATICCHECK        := $(BIN)/.stamp-staticcheck-$(STATICCHECK_VERSION)
CENTRIFUGO         := $(BIN)/.stamp-centrifugo-$(CENTRIFUGO_VERSION)

.PHONY: run build test fuzz soak generate fmt tidy lint check bench-rpc bench-iii bench-http bench-fanout bench-fanout-light centrifugo bench-fleet bench-queue bench-storm bench-connect bench-presence bench-contracts

run:
	go run ./cmd/trine engine

build:
	go build -ldflags "-X main.version=$(VERSION)" -o trine ./cmd/trine

# The iii compatibility test (compat/) runs the npm package iii-sdk, pinned
# in compat/iii-node/package-lock.json; npm ci installs it when the lock
# file changes.
NODE_COMPAT := compat/iii-node
# The browser test (compat/browser_test.go) drives the OS's chromium with
# puppeteer-core, pinned in compat/browser/package-lock.json; it never
# downloads a browser.
NODE_BROWSER := compat/browser
# @trine/client (clients/js) is built with esbuild and tsc, pinned in its
# package-lock.json; compat/jsclient_test.go builds it, checks its bundle
# size and runs its node tests against a real engine and gateway.
NODE_CLIENT := clients/js

test: $(NODE_COMPAT)/node_modules/.package-lock.json $(NODE_BROWSER)/node_modules/.package-lock.json $(NODE_CLIENT)/node_modules/.package-lock.json
	go test -race -count=1 -timeout 20m ./...

# Every fuzz target, as package:function. make test runs their seed
# corpora (and any crasher committed under testdata/fuzz); make fuzz runs
# each for FUZZTIME. A crasher the fuzzer finds lands in the package's
# testdata/fuzz: commit it as a seed once fixed.
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./engine:FuzzValidateID \
	./engine:FuzzValidJSONText \
	./engine:FuzzScanJSONText \
	./engine/iiiserver:FuzzWorkerBytes \
	./internal/wsconn:FuzzReader \
	./gateway:FuzzClientBytes \
	./httptrigger:FuzzParsePath \
	./httptrigger:FuzzSplitRequestPath \
	./internal/subject:FuzzToken \
	./streammodule/store:FuzzScan \
	./streammodule/updateops:FuzzApply \
	./cmd/trine:FuzzConfigFile

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

$(NODE_COMPAT)/node_modules/.package-lock.json: $(NODE_COMPAT)/package-lock.json $(NODE_COMPAT)/package.json
	npm ci --prefix $(NODE_COMPAT) --no-audit --no-fund

$(NODE_BROWSER)/node_modules/.package-lock.json: $(NODE_BROWSER)/package-lock.json $(NODE_BROWSER)/package.json
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix $(NODE_BROWSER) --no-audit --no-fund

$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package-lock.json $(NODE_CLIENT)/package.json
	npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund

# The console's bundle (console/dist) is generated from console/web and
# clients/js/src with esbuild's Go API: no npm. The settings and metrics
# tables of docs/cli.md are generated from the code and a real run
# (cmd/trine/reference_test.go).
generate: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	PATH="$(BIN):$$PATH" buf generate
	go generate ./console
	go generate ./cmd/trine

# gofmt -s every Go file but the generated ones.
fmt:
	find . -name '*.go' -not -path './.bin/*' -not -path './.git/*' -print0 \
		| xargs -0 grep -LZ '^// Code generated .* DO NOT EDIT\.$$' \
		| xargs -0 -r gofmt -s -w

tidy:
	go mod tidy

lint: $(BUF) $(STATICCHECK)
	go vet ./...
	PATH="$(BIN):$$PATH" buf lint
	$(BIN)/staticcheck ./...

# check fails when regenerating, formatting or tidying changes anything, or
# leaves files that git does not know about.
check: generate fmt tidy
	git diff --exit-code
	@untracked="$$(git ls-files --others --exclude-standard)"; \
	if [ -n "$$untracked" ]; then echo "untracked files:"; echo "$$untracked"; exit 1; fi

# A bounded run of a real engine under hostile load, SIGKILL and restart
# included, checking its invariants (bench/soak).
SOAK_DURATION ?= 10m
soak:
	go run ./bench/soak -duration $(SOAK_DURATION)

bench-rpc:
	go run ./bench/rpc

bench-iii:
	go run ./bench/iii

bench-http:
	go run ./bench/httptrigger

bench-fanout:
	go run ./bench/fanout

# bench/fanout finds it in .bin/centrifugo (or -centrifugo-bin, $$CENTRIFUGO_BIN).
centrifugo: $(CENTRIFUGO)

bench-fanout-light: $(CENTRIFUGO)
	go run ./bench/fanout -servers trine,centrifugo -subscribers 10000 -rate 4 -max=false -duration 15s -idle 0

bench-fleet:
	go run ./bench/fleet

bench-queue:
	go run ./bench/queue

bench-storm:
	go run ./bench/storm

# A connect storm: 5,000 sockets dialled at 5,000/s, each joining one group.
bench-connect:
	go run ./bench/storm -clients 5000 -connect-rate 5000 -rounds 0 -items 100

bench-presence:
	go run ./bench/presence

bench-contracts:
	go run ./bench/contracts

$(BUF):
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@

$(PROTOC_GEN_GO):
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

$(STATICCHECK):
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@touch $@

$(CENTRIFUGO):
	GOBIN=$(BIN) go install -trimpath \
		-ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=$(CENTRIFUGO_VERSION:v%=%)" \
		github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION)
	@touch $@
