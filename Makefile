# one-contextd build and test entry points. `make check` is the whole suite
# (what CI runs); `make demo` is the built-in demo. Both install what they
# need first (as root, on Debian 12).
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
GOFLAGS_BUILD := -trimpath -ldflags='-s -w -X main.version=$(VERSION)'
BIN := bin/one-contextd

.PHONY: all build deps deps-demo test lint check demo bench clean fuzz

all: build

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/one-contextd
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/mkcontextiso ./cmd/mkcontextiso

deps:
	bash .ci/install-deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	staticcheck ./...

test: build
	go test -count=1 -timeout 30m ./...

check: deps lint test

deps-demo:
	bash .ci/install-deps.sh base

demo: deps-demo build
	bash testdata/demo/demo.sh

bench:
	go test -run '^$$' -bench . -benchmem ./...

fuzz:
	go test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./context/shvars

clean:
	rm -rf bin
