# The two set-up commands: `make demo` and `make test`. Everything else is
# a building block of those two.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_GEN  ?= -G "Unix Makefiles"

.PHONY: all deps build asan test test-fast demo bench format format-check clean docs

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory | grep -v -E '^\[ *[0-9]+%\] (Building|Built target|Linking)' || true

asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test, in the normal build and again under ASan+UBSan.
test: build asan format-check
	ctest --test-dir $(BUILD) --output-on-failure -j 2
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir $(ASAN_BUILD) --output-on-failure -j 2

# The normal build only (for quick iteration).
test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j 2

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

docs: build
	@$(BUILD)/sluice config-doc > docs/CONFIG.md

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
