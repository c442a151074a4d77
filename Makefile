# one-contextd build and test entry points. `make check` is the whole suite
# (what CI runs); `make demo` is the built-in demo. Both install what they
# need first (as root, on Debian 12).
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
GOFLAGS_BUILD := -trimpath -ldflags='-s -w -X main.version=$(VERSION)'
BIN := bin/one-contextd
# The package version: the last tag when there is one, else 0.1.0.
DEB_VERSION ?= $(shell git describe --tags --abbrev=0 2>/dev/null | sed 's/^v//' || true)
ifeq ($(DEB_VERSION),)
DEB_VERSION := 0.1.0
endif

.PHONY: all build deps deps-demo test lint check demo bench clean fuzz deb e2e bench-boot

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

# The whole suite: lint, every package's tests, the .deb, and the VM boots.
check: deps lint test deb e2e

deb: build
	BIN=$(BIN) bash packaging/build-deb.sh $(DEB_VERSION) dist

e2e: build
	ONE_CONTEXTD_E2E=1 go test -count=1 -timeout 45m -v ./e2e/

bench-boot: build
	ONE_CONTEXTD_E2E_ICOUNT=$(ICOUNT) bash packaging/bench-boot.sh $(or $(N),5) $(or $(NETMGRS),ifupdown networkd)

deps-demo:
	bash .ci/install-deps.sh base

demo: deps-demo build
	bash testdata/demo/demo.sh

bench:
	go test -run '^$$' -bench . -benchmem ./...

fuzz:
	go test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./context/shvars

clean:
	rm -rf bin dist
