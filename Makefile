# pinhole build targets. `make test` is the one command that runs all tests.
GO       ?= go
PKGS     := ./...
LDFLAGS  := -s -w
DIST     := dist
BINARIES := pinhole pinholed

.PHONY: all build demo test lint cross sizes clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# The lab demo: a device and its internet in network namespaces (needs root).
demo: build
	./bin/pinhole lab demo

# All tests, with the race detector. As root, the network-namespace tests run
# too (each in namespaces it creates); otherwise they skip and say why.
test:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)

# Stripped, static binaries for the device architectures.
cross:
	@set -e; for target in arm:7 arm64: amd64:; do \
	  arch=$${target%%:*}; arm=$${target#*:}; out=$(DIST)/linux-$$arch$${arm:+v$$arm}; \
	  mkdir -p $$out; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/ ./cmd/...; \
	done
	@$(MAKE) --no-print-directory sizes

sizes:
	@for f in $(DIST)/*/*; do printf '%-32s %9d bytes\n' $$f $$(stat -c %s $$f); done

clean:
	rm -rf bin $(DIST)
