# The two commands a newcomer types: `make demo` and `make test`. Both install what is
# missing (scripts/deps.sh) and build once; the integration tests use the binary just built.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin

SWIFT   ?= swift
BIN_DIR := $(shell pwd)/.build/debug
export STIGMER_EXEC_BIN := $(BIN_DIR)/stigmer-exec

.PHONY: all deps build test unit integration demo release clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(SWIFT) build --build-tests

unit: build
	$(SWIFT) test --skip-build

integration: build
	python3 -m pytest -q integration

test: build
	$(SWIFT) test --skip-build
	python3 -m pytest -q integration

demo: build
	@scripts/demo.sh

# The shipped binary: release, fully static (no dynamic loader, no relocations: ~1.5 ms
# less per launch than --static-swift-stdlib, see benchmarks/RESULTS.md), stripped, in its
# own build folder (changing link modes in a shared folder rebuilds everything).
release:
	@scripts/deps.sh build
	$(SWIFT) build -c release -Xswiftc -static-executable --scratch-path .build-static --product stigmer-exec
	mkdir -p dist && cp .build-static/release/stigmer-exec dist/ && strip dist/stigmer-exec

clean:
	rm -rf .build .build-static dist
