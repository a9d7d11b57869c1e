# Thin wrapper: `make demo` and `make test` do all set-up on a fresh Debian 12 machine (packages, configure, build).
JOBS   ?= $(shell nproc)
BUILD  ?= build
ASAN   ?= build-asan
CUDA   ?= AUTO

FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps build asan test test-fast test-asan demo bench fuzz install clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPTOMO_CUDA=$(CUDA) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DAPTOMO_SANITIZE=ON -DAPTOMO_CUDA=OFF >/dev/null
	cmake --build $(ASAN) -j $(JOBS)

# The whole suite twice: optimised build, then ASan+UBSan build.
test: build asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN) && ctest --output-on-failure -j $(JOBS) -LE nosan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

bench: build
	$(BUILD)/tools/aptomo bench ingest

# libFuzzer (clang): each decoder target for FUZZ_SECONDS, corpus under $(FUZZ)/corpus.
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DAPTOMO_FUZZ=ON -DAPTOMO_TESTS=OFF -DAPTOMO_CUDA=OFF >/dev/null
	cmake --build $(FUZZ) -j $(JOBS)
	for t in fuzz_v1 fuzz_v2 fuzz_codec fuzz_scanmeta fuzz_config; do \
	  mkdir -p $(FUZZ)/corpus/$$t; \
	  $(FUZZ)/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(FUZZ)/corpus/$$t tests/data || exit 1; \
	done

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
