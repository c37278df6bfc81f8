# Sluice: the two entry points a fresh Debian 12 machine needs (run as root):
#   make demo   builds (release) and runs a short `sluice bench`: two network namespaces joined
#               by a veth pair, every backend in rxdrop, echo and txonly next to the in-kernel
#               ceiling, about a minute; prints the table, writes JSON and SVG under .build/bench
#   make test   builds the API documentation (DocC, warnings fail) and the man page, runs every
#               fuzz target for 5 s, then builds and runs the whole test suite
# Both install the Debian packages they need first (idempotent). The XDP programs in bpf/ are
# compiled and embedded by the package's own build (SluiceBPFPlugin); `make bpf` builds loose
# objects only for SLUICE_BPF_DIR, the development override.

SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libxdp-dev libbpf-dev liburing-dev libssl-dev pkg-config clang llvm iproute2 iputils-ping ethtool sockperf util-linux python3-jsonschema knot knot-dnsutils bind9-dnsutils dnsperf tcpdump gnutls-bin openssl curl
# xsk_redirect is built twice: plain XDP, and the multi-buffer (xdp.frags) variant; udp_drop is
# the bench's counting sink and in-kernel ceiling.
BPF_OBJECTS := bpf/xsk_redirect.bpf.o bpf/xsk_redirect_frags.bpf.o bpf/udp_drop.bpf.o
BPF_CLANG ?= $(shell command -v clang-14 || command -v clang)
BPF_INCLUDES := -I/usr/include/$(shell uname -m)-linux-gnu

.PHONY: all deps bpf build release test test-asan test-tsan layers docs man fuzz soak demo echo-demo bench-micro clean

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

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The whole suite runs under AddressSanitizer (test-asan): the same tests as `swift test`, with
# every out-of-bounds access and use after free caught where it happens.
test: deps layers docs man
	$(MAKE) fuzz SECONDS=5
	$(MAKE) test-asan

# The suite under AddressSanitizer, in its own scratch path. Leak detection is off: the Swift
# runtime keeps its metadata caches for the life of the process. FILTER=regex runs a part.
test-asan: deps
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --sanitize=address --scratch-path .build-asan $(if $(FILTER),--filter '$(FILTER)')

# The suite under ThreadSanitizer, by hand (not in CI). Skipped: the privilege drop with worker
# threads, which rightly refuses to go on when a thread does not answer its signal, and the
# sanitizer's own thread blocks every signal. Suppressed: Mutex's kernel handoff (see the file).
test-tsan: deps
	TSAN_OPTIONS="suppressions=$(CURDIR)/Tests/tsan-suppressions.txt" $(SWIFT) test --sanitize=thread --scratch-path .build-tsan --skip userKeepsWhatXDPNeeds $(if $(FILTER),--filter '$(FILTER)')

# The library products' API documentation (DocC, with the Sluice catalog's articles and tutorial);
# any warning fails. The archives land in .build/plugins/Swift-DocC/outputs.
DOC_TARGETS := Sluice SluiceCore SluicePackets SluiceSystem SluiceUDP SluiceSockets SluiceXDP SluiceURing SluiceTUN SluiceHost SluiceDNS SluiceTLS SluicePrometheus SluiceBench
docs:
	$(SWIFT) package generate-documentation $(addprefix --target ,$(DOC_TARGETS)) --warnings-as-errors

# libFuzzer (with AddressSanitizer) on every parser of untrusted bytes, SECONDS each, seeded from
# Tests/Fuzz/Corpus/<target>; what a run adds goes to .build-fuzz/corpus. A crash stops it and
# leaves crash-* with the input (make it a regression test).
FUZZ_TARGETS := fuzz-udp-stage fuzz-dns-message fuzz-dns-zone fuzz-dns-responder fuzz-resolver-configuration fuzz-metrics-text fuzz-addresses \
                fuzz-tls-server fuzz-reassembly fuzz-control-messages fuzz-virtio-net fuzz-host-stage fuzz-number-list
SECONDS ?= 30
fuzz: deps
	cd Tests/Fuzz && $(SWIFT) build -c release --scratch-path ../../.build-fuzz -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
	@for target in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$target; \
	  SWIFT_BACKTRACE=enable=no .build-fuzz/release/$$target .build-fuzz/corpus/$$target Tests/Fuzz/Corpus/$$target -max_total_time=$(SECONDS) \
	    -print_final_stats=1 -artifact_prefix=.build-fuzz/$$target- > .build-fuzz/$$target.log 2>&1; status=$$?; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' .build-fuzz/$$target.log); \
	  corpus=$$(ls .build-fuzz/corpus/$$target | wc -l); \
	  echo "fuzz: $$target: $$runs executions in $(SECONDS) s, corpus $$corpus inputs, exit $$status"; \
	  if [ $$status -ne 0 ]; then tail -40 .build-fuzz/$$target.log; exit 1; fi; \
	done

# The echo at full rate on each backend for MINUTES in all, memory and frames watched through /metrics.
MINUTES ?= 10
soak: release
	bash Tests/Scripts/soak.sh .build/release/sluice $(MINUTES)

# sluice(1), from the command's own help (swift-argument-parser's generate-manual plugin).
man:
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --configuration debug --authors "The Sluice authors"
	@mkdir -p .build/man && cp .build/plugins/GenerateManual/outputs/SluiceCLI/sluice.1 .build/man/sluice.1
	@echo "man page: .build/man/sluice.1 (man -l .build/man/sluice.1)"

# Fails on any import the layer map in README.md forbids.
layers:
	bash Tests/Scripts/check-layers.sh

demo: release
	@mkdir -p .build/bench
	.build/release/sluice bench --duration 1.5 --json .build/bench/bench.json --svg .build/bench/bench.svg

# The echo service and load client on their own, socket then AF_XDP, IPv4 and IPv6.
echo-demo: release
	@bash Tests/Scripts/demo.sh .build/release/sluice

# Per-packet costs with package-benchmark; fails if any measured loop allocates.
bench-micro: deps
	cd Benchmarks && $(SWIFT) package benchmark && $(SWIFT) package benchmark thresholds check

clean:
	rm -rf .build .build-asan .build-tsan .build-fuzz bpf/*.o
