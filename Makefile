# The front door: make | make run | make test | make bench | make install PREFIX=/usr/local
# Everything real happens in CMake/CTest; this file only picks build folders and flags.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PORT       ?= 8001
CMAKE_DEV   = -DO11Y_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build-deps build run test test-normal test-ts test-asan test-tsan test-fuzz fuzz bench install clean

all: build

deps:
	@scripts/deps.sh test

build-deps:
	@scripts/deps.sh build

# make run builds the library and the service only: the test tools are not installed for it.
build: build-deps
	@cmake -S . -B $(BUILD) $(CMAKE_DEV) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p var
	exec $(BUILD)/services/generation-service/generation-service --port $(PORT) --db var/generation.db

# The normal build, then the TypeScript kit against it, then AddressSanitizer + UBSan, then
# ThreadSanitizer on the concurrency tests, then each fuzz target over its seed corpus for a few
# seconds.
test: test-normal test-ts test-asan test-tsan test-fuzz

test-normal: deps build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-ts: deps build
	@scripts/test_ts.sh $(BUILD)

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_DEV) -DO11Y_SANITIZE=ON -DO11Y_BUILD_BENCH=OFF -DO11Y_BUILD_CONSOLE=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE "install|lint"

test-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) $(CMAKE_DEV) -DO11Y_TSAN=ON -DO11Y_BUILD_BENCH=OFF -DO11Y_BUILD_CONSOLE=OFF >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		ctest --output-on-failure -j $(JOBS) -L concurrency

# libFuzzer needs clang (scripts/deps.sh installs it); without it the fuzz step says so and passes.
define fuzz_run
	@if command -v clang >/dev/null 2>&1; then \
		cmake -S . -B $(FUZZ_BUILD) $(CMAKE_DEV) -DCMAKE_C_COMPILER=clang -DO11Y_FUZZ=ON \
			-DO11Y_BUILD_TESTS=OFF -DO11Y_BUILD_BENCH=OFF -DO11Y_BUILD_CONSOLE=OFF -DO11Y_FUZZ_SECONDS=$(1) >/dev/null && \
		cmake --build $(FUZZ_BUILD) -j $(JOBS) && \
		cd $(FUZZ_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L fuzz -j $(JOBS); \
	else \
		echo "fuzz: clang is not installed; the fuzz targets were skipped (scripts/deps.sh test installs it)"; \
	fi
endef

test-fuzz: deps
	$(call fuzz_run,4)

# Each target for FUZZ_SECONDS (default 300), two at a time.
fuzz: deps
	$(call fuzz_run,$(FUZZ_SECONDS))

bench: build
	@scripts/deps.sh bench
	@scripts/bench.sh $(BUILD)

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
