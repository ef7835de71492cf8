# gmtrust — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
DATA_DIR ?= ./data
BIN := bin/gmtrust
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 15s
# Minimising a new interesting input is bounded by executions: with Go's
# default (60 s) FuzzVerify spent its whole 15 s budget minimising inputs
# grown from its 6.5 KB and 31 KB seed seals (62 executions in all); with
# 50x it ran ~37 000.
FUZZMINIMIZE ?= 50x
BENCHTIME ?= 1s

.PHONY: all build run test deps test-deps fuzz bench bench-ca bench-hsm bench-ocsp bench-ocsp-light lint clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/gmtrust

# Initialise $(DATA_DIR) on first run (SQLite + software keystore), then serve.
run: build
	@if [ ! -f $(DATA_DIR)/config.yaml ]; then ./$(BIN) init --data-dir $(DATA_DIR); fi
	./$(BIN) serve --data-dir $(DATA_DIR)

# Installs what the tests need when it is missing (CI runs as root on a
# clean machine), then runs every test, a race pass over the concurrent
# code, and bounded fuzzing of every parser that takes outside input.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m ./internal/store/... ./hsm/...
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/gmtrust
	$(MAKE) --no-print-directory fuzz

fuzz:
	@GO=$(GO) scripts/fuzz.sh $(FUZZTIME) $(FUZZMINIMIZE)

test-deps:
	@scripts/install-test-deps.sh

# Every benchmark (numbers in BENCHMARKS.md). test-deps provides SoftHSM2
# for the PKCS#11 ones.
bench: build test-deps
	GMTRUST_TEST_POSTGRES=$(BENCH_POSTGRES) $(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) -timeout 60m ./...
	BENCH_POSTGRES=$(BENCH_POSTGRES) scripts/bench-issue.sh
	scripts/bench-ocsp.sh

# Only the CA core section of BENCHMARKS.md: issuance in-process (SM2 and
# ECDSA CAs, SQLite and PostgreSQL), through the HTTP API with 8 and 32
# keep-alive clients (Go clients in-process, then wrk against gmtrust
# serve: scripts/bench-issue.sh), and CRLs of 10k, 100k and 1M entries
# (time, peak RSS).
BENCH_POSTGRES ?= $(or $(GMTRUST_TEST_POSTGRES),postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
bench-ca:
	GMTRUST_TEST_POSTGRES=$(BENCH_POSTGRES) $(GO) test -run='^$$' -bench='^(BenchmarkIssue|BenchmarkIssueSerial|BenchmarkCRL)$$' -benchtime=$(BENCHTIME) -timeout 30m ./ca/
	GMTRUST_TEST_POSTGRES=$(BENCH_POSTGRES) $(GO) test -run='^$$' -bench='^BenchmarkHTTPIssue$$' -benchtime=$(BENCHTIME) -timeout 30m ./internal/app/
	BENCH_POSTGRES=$(BENCH_POSTGRES) scripts/bench-issue.sh

# Only the OCSP load run of BENCHMARKS.md: wrk against gmtrust serve, a Go
# ceiling and OpenSSL's responder (installs wrk when missing).
bench-ocsp: build
	scripts/bench-ocsp.sh

# The same run at light concurrency (wrk -t1 -c4 for every server), where
# the latency of one request is not queueing behind 63 others: the
# setting at which BENCHMARKS.md checks issue #3's p99 target.
bench-ocsp-light: build
	OCSP_BENCH_THREADS=1 OCSP_BENCH_CONNECTIONS=4 scripts/bench-ocsp.sh

# Only the HSM section of BENCHMARKS.md: signatures through the PKCS#11
# session pool against pure Go, and issuance with SoftHSM against the
# software keystore.
bench-hsm: test-deps
	$(GO) test -run='^$$' -bench='^(BenchmarkSign|BenchmarkP256OverheadInterleaved)$$' -benchtime=$(BENCHTIME) ./hsm/pkcs11/
	$(GO) test -run='^$$' -bench='^BenchmarkIssueHSM(Interleaved)?$$' -benchtime=$(BENCHTIME) ./internal/app/

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...

clean:
	rm -rf bin
