# The README's two commands: `make run` and `make test`. Both install missing Debian
# packages first.
BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc)
CONFIG ?= proxy.yaml.example

.PHONY: all deps build build-asan run test test-asan fuzz format clean

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

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
