# Thin wrapper: `make demo` and `make test` do all set-up on a fresh Debian 12 machine (packages, configure, build).
JOBS   ?= $(shell nproc)
BUILD  ?= build
ASAN   ?= build-asan
CUDA   ?= AUTO

.PHONY: all deps build asan test test-fast test-asan demo bench install clean

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

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN)
