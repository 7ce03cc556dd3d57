# The two commands a newcomer types: `make demo` and `make test`. Both install what is
# missing (scripts/deps.sh) and build once; the integration tests use the binary just built.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin

SWIFT   ?= swift
BIN_DIR := $(shell pwd)/.build/debug
export STIGMER_EXEC_BIN := $(BIN_DIR)/stigmer-exec

.PHONY: all deps build test unit integration demo launcher release fuzz fuzz-smoke clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(SWIFT) build --build-tests

# A throwaway PostgreSQL for the run (the store conformance suite and the integration
# tests use it); stopped whatever happens.
PG_DIR := $(shell pwd)/.build-postgres
define with_postgres
	scripts/postgres.sh stop $(PG_DIR); \
	url=$$(scripts/postgres.sh start $(PG_DIR)) || exit 1; \
	trap 'scripts/postgres.sh stop $(PG_DIR)' EXIT; \
	export STIGMER_TEST_POSTGRES_URL=$$url; \
	$(1)
endef

unit: build
	@$(call with_postgres, $(SWIFT) test --skip-build)

integration: build
	@$(call with_postgres, python3 -m pytest -q integration)

# The static launcher too: an injected pod's init container runs it from an image with
# nothing else in it (integration/test_kube_pod.py); `make release` reuses it.
export STIGMER_STATIC_LAUNCHER := $(shell pwd)/.build-static/release/stigmer-exec

test: build launcher
	@$(call with_postgres, $(SWIFT) test --skip-build && python3 -m pytest -q integration)

# Only what the demo needs: the launcher, not the tests, gRPC or PostgreSQL (~1/3 of `build`).
demo:
	@scripts/deps.sh build
	$(SWIFT) build --product stigmer-exec
	@scripts/demo.sh

# The shipped binary: release, fully static (no dynamic loader, no relocations: ~1.5 ms
# less per launch than --static-swift-stdlib, see benchmarks/RESULTS.md), stripped, in its
# own build folder (changing link modes in a shared folder rebuilds everything).
# The companion links NIO and makes network connections (getaddrinfo needs the system's
# NSS), so it keeps a dynamic glibc: --static-swift-stdlib.
# The launcher's code is laid out for the launch: function sections, and lld placing the
# functions one launch runs (scripts/launch.order, from scripts/generate-launch-order.sh)
# side by side — fewer pages touched, so fewer page faults and less to unmap at execve.
# Concrete generic types get direct metadata accessors, not mangled names the runtime
# demangles on first use (a fifth of a launch's instructions went to the demangler).
# STIGMER_STATIC_LAUNCHER: libdispatch and SQLite's extensions stay out (Sources/CStigmerStatic).
LAUNCHER_FLAGS := -Xcc -DSTIGMER_STATIC_LAUNCHER -Xswiftc -static-executable -Xswiftc -Xfrontend -Xswiftc -function-sections \
	-Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors -Xcc -ffunction-sections \
	-Xswiftc -use-ld=lld -Xlinker --symbol-ordering-file=$(CURDIR)/scripts/launch.order -Xlinker --no-warn-symbol-ordering \
	$(if $(LAUNCHER_MAP),-Xlinker -Map=$(LAUNCHER_MAP))
# LAUNCHER_MAP=FILE: lld's link map too (scripts/generate-launch-order.sh reads it).

launcher:
	@scripts/deps.sh build
	@# SwiftPM does not know the order file as an input: relink when it changed.
	@if [ scripts/launch.order -nt .build-static/release/stigmer-exec ]; then rm -f .build-static/release/stigmer-exec; fi
	$(SWIFT) build -c release $(LAUNCHER_FLAGS) --scratch-path .build-static --product stigmer-exec
	@# lld writes its output through a shared mapping, and the page cache keeps such a file
	@# in a shape fault-around maps poorly: the same bytes took 60 text page faults per
	@# launch instead of 44 (~0.15 ms). An installed binary is written by cp or tar; so is
	@# this one, so that what is measured here is what ships.
	@cp .build-static/release/stigmer-exec .build-static/release/stigmer-exec.copy && \
	  mv .build-static/release/stigmer-exec.copy .build-static/release/stigmer-exec
	@# No libdispatch: its constructor reads /sys/devices/system/cpu/possible twice and the
	@# CPU affinity on every launch; the idle Concurrency runtime's references to it are
	@# defined by nodispatch.c.
	@if nm .build-static/release/stigmer-exec | grep -q ' libdispatch_init$$'; then \
	  echo "stigmer-exec links libdispatch (libdispatch_init); keep it out of the launch path (nodispatch.c)" >&2; exit 1; fi

release: launcher
	@# The launcher links no Foundation (its initialisers would run on every launch);
	@# FoundationEssentials (swift-crypto's Data) is all it may hold.
	@n=$$(nm .build-static/release/stigmer-exec | grep -c -e '$$s10Foundation' -e '30FoundationInternationalization' || true); \
	  if [ "$$n" != 0 ]; then echo "stigmer-exec links Foundation ($$n symbols); keep it out of the launch path" >&2; exit 1; fi
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-release-full --product stigmer-exec-full
	mkdir -p dist && cp .build-static/release/stigmer-exec .build-release-full/release/stigmer-exec-full dist/
	strip dist/stigmer-exec dist/stigmer-exec-full
	@# Execute-only: the kernel makes a process of a binary its user cannot read
	@# non-dumpable from execve, before its main can, so another process of that user
	@# cannot reopen the descriptors it is handed (the bridge's headers, a token) in
	@# the instant before (SECURITY.md promise 7).
	chmod 0711 dist/stigmer-exec-full

# libFuzzer harnesses (Fuzz/, FUZZING.md) with AddressSanitizer, in their own build folder:
# each for FUZZ_SECONDS, one after another (FUZZ_HARNESSES to pick some). `fuzz-smoke` is
# CI's: it builds all twelve in one debug plan, replays their corpora and fuzzes each for seconds.
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES ?=

fuzz:
	@scripts/deps.sh build
	scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-smoke:
	@scripts/deps.sh build
	scripts/fuzz.sh smoke

clean:
	rm -rf .build .build-static .build-release-full .build-postgres .build-fuzz dist
