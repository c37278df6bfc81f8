# Sluice: the two entry points a fresh Debian 12 machine needs (run as root):
#   make demo   builds, makes two network namespaces joined by a veth pair, runs the echo
#               service in one and a bounded load client in the other, prints what happened
#   make test   builds and runs the whole test suite
# Both install the Debian packages they need first (idempotent).

SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libxdp-dev libbpf-dev liburing-dev libssl-dev pkg-config clang llvm iproute2 iputils-ping ethtool sockperf util-linux
# xsk_redirect is built twice: plain XDP, and the multi-buffer (xdp.frags) variant.
BPF_OBJECTS := bpf/xsk_redirect.bpf.o bpf/xsk_redirect_frags.bpf.o
BPF_CLANG ?= $(shell command -v clang-14 || command -v clang)
BPF_INCLUDES := -I/usr/include/$(shell uname -m)-linux-gnu

.PHONY: all deps bpf build release test demo bench-micro clean

all: build

deps:
	@missing=(); for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing+=($$p); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "installing: $${missing[*]}"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null; \
	fi

bpf/%.bpf.o: bpf/%.bpf.c
	$(BPF_CLANG) -O2 -g -target bpf $(BPF_INCLUDES) -c $< -o $@

bpf/xsk_redirect_frags.bpf.o: bpf/xsk_redirect.bpf.c
	$(BPF_CLANG) -O2 -g -target bpf -DSLUICE_FRAGS $(BPF_INCLUDES) -c $< -o $@

bpf: deps $(BPF_OBJECTS)

build: deps bpf
	$(SWIFT) build

release: deps bpf
	$(SWIFT) build -c release

test: deps bpf
	$(SWIFT) test

demo: release
	@bash Tests/Scripts/demo.sh .build/release/sluice

# Per-packet costs with package-benchmark; fails if any measured loop allocates.
bench-micro: deps
	cd Benchmarks && $(SWIFT) package benchmark && $(SWIFT) package benchmark thresholds check

clean:
	rm -rf .build bpf/*.o
