# The README's two commands: `make run` and `make test`. Both install missing Debian
# packages first.
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS ?= $(shell nproc)
CONFIG ?= proxy.yaml.example
SECONDS ?= 60
FUZZ_TARGETS = smtp_command smtp_reply smtp_data dns_msg config policy_table \
  mtasts_txt mtasts_policy tlsrpt_txt metrics_request cache_codec

.PHONY: all deps build build-asan run test test-release test-asan test-container fuzz bench \
  bench-lmtp install clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DSTARTTLS_PROXY_ASAN=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j$(JOBS)

run: build
	./$(BUILD)/starttls-proxy -c $(CONFIG)

# Every test twice: the optimized build, then the whole suite under ASan+UBSan.
test: test-release test-asan

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j$(JOBS)

# The Dockerfile's image built with podman (base made with debootstrap, cached in
# /var/cache/starttls-proxy-test) and run: relay over STARTTLS, non-root, SIGTERM drain.
# Needs root; installs podman, runc and debootstrap if missing. tests/container/run.sh.
test-container:
	@./scripts/install-container-deps.sh
	./tests/container/run.sh

# libFuzzer (clang): each target for SECONDS seconds on a copy of its seed corpus.
fuzz: deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DSTARTTLS_PROXY_FUZZ=ON >/dev/null
	cmake --build $(BUILD_FUZZ) -j$(JOBS)
	set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD_FUZZ)/corpus/$$t; cp -n tests/fuzz/corpus/$$t/* $(BUILD_FUZZ)/corpus/$$t/; \
	  ./$(BUILD_FUZZ)/tests/fuzz_$$t -max_total_time=$(SECONDS) -print_final_stats=1 \
	    $(BUILD_FUZZ)/corpus/$$t; \
	done

# Side-by-side benchmark with stunnel and Postfix (bench/README.md).
bench: build
	./bench/run.sh

# LMTP fan-out: one message to 10 domains through the LMTP listener (README).
bench-lmtp: build
	PROXY_BIN=$(BUILD)/starttls-proxy /usr/bin/python3 bench/lmtp_fanout.py

PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
