# Thin wrapper: `make demo` and `make test` do all set-up on a fresh Debian 12 machine (packages, configure, build).
# Build directories can be moved (make BUILD=b ASAN=b-asan RELEASE=b-rel test), e.g. for several checkouts' builds.
JOBS    ?= $(shell nproc)
BUILD   ?= build
ASAN    ?= build-asan
RELEASE ?= build-release
CUDA    ?= AUTO
PREFIX  ?=

FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 15

# Warnings are errors (APTOMO_WERROR) in development and CI only: make test, test-fast, asan, release, check-deps
# and fuzz turn them on; make build, demo, bench and install (users, packagers) only warn. Going from one kind to
# the other reconfigures $(BUILD), which recompiles it.
WERROR ?= OFF
test test-fast asan release check-deps fuzz fuzz-build fuzz-ci: WERROR = ON

.PHONY: all deps build asan release check-deps test test-fast test-asan demo bench fuzz fuzz-build fuzz-ci install clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPTOMO_CUDA=$(CUDA) -DAPTOMO_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DAPTOMO_SANITIZE=ON -DAPTOMO_CUDA=OFF -DAPTOMO_WERROR=$(WERROR) \
	  >/dev/null
	cmake --build $(ASAN) -j $(JOBS)

# Compile-only builds of library, daemon and CLI at the optimisation levels $(BUILD) (-O2) and $(ASAN) (-O0) do not
# cover, since gcc's flow warnings (maybe-uninitialized) differ per level: Release (-O3, what packagers build),
# -O1 and -Os; and clang (the fuzz builds' compiler) at -O3. About 20 s each on 2 cores.
release: deps
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DAPTOMO_TESTS=OFF -DAPTOMO_CUDA=OFF \
	  -DAPTOMO_WERROR=$(WERROR) >/dev/null
	cmake --build $(RELEASE) -j $(JOBS)
	for o in O1 Os; do \
	  cmake -S . -B $(RELEASE)-$$o -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS_RELEASE=-$$o -DNDEBUG" \
	    -DAPTOMO_TESTS=OFF -DAPTOMO_CUDA=OFF -DAPTOMO_WERROR=$(WERROR) >/dev/null && \
	  cmake --build $(RELEASE)-$$o -j $(JOBS) || exit 1; \
	done
	CC=clang cmake -S . -B $(RELEASE)-clang -DCMAKE_BUILD_TYPE=Release -DAPTOMO_TESTS=OFF -DAPTOMO_CUDA=OFF \
	  -DAPTOMO_WERROR=$(WERROR) >/dev/null
	cmake --build $(RELEASE)-clang -j $(JOBS)

# Every package the configure + build steps used must be installed by scripts/deps.sh (its list, closed over
# Depends/Pre-Depends: deps.sh installs without Recommends). Then the check must be able to fail: without
# ocl-icd-opencl-dev (Debian's dnnl-config.cmake needs OpenCL; libdnnl-dev only Recommends it) it must name it.
check-deps: build asan release fuzz-build
	bash scripts/check-deps.sh $(BUILD) $(ASAN) $(RELEASE) $(RELEASE)-clang $(FUZZ)
	@bash scripts/check-deps.sh --without ocl-icd-opencl-dev $(BUILD) >$(BUILD)/check-deps-selftest.log 2>&1; \
	rc=$$?; if [ $$rc -ne 1 ] || ! grep -q '^check-deps: MISSING ocl-icd-opencl-dev:' $(BUILD)/check-deps-selftest.log; \
	then cat $(BUILD)/check-deps-selftest.log; \
	  echo "check-deps self-test: expected exit 1 naming ocl-icd-opencl-dev without it, got exit $$rc"; exit 1; \
	else echo "check-deps self-test: ok (without ocl-icd-opencl-dev the check fails and names it)"; fi

# The README's test command, and CI's (.ci/run): -Werror builds, the dependency check, every libFuzzer target for
# FUZZ_CI_SECONDS, then the whole suite twice: optimised build, then ASan+UBSan build. tests/test_install.sh
# installs $(BUILD) to a temporary prefix.
test: build asan release check-deps fuzz-ci
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN) && ctest --output-on-failure -j $(JOBS) -LE nosan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

bench: build
	$(BUILD)/tools/aptomo bench ingest

# libFuzzer (clang, ASan+UBSan): the targets of tests/fuzz only (library and daemon objects they link, no CLI).
fuzz-build: deps
	CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DAPTOMO_FUZZ=ON -DAPTOMO_TESTS=OFF -DAPTOMO_CUDA=OFF \
	  -DAPTOMO_WERROR=$(WERROR) >/dev/null
	cmake --build $(FUZZ) -j $(JOBS) --target fuzz_all

# Every target for FUZZ_CI_SECONDS (make test) or FUZZ_SECONDS (make fuzz) on its committed seeds
# (tests/fuzz/corpus/<target>, read-only; new units go to $(FUZZ)/fuzz-ci/<target>/corpus); any crash, leak or
# timeout fails and names the input. Executions per target: $(FUZZ)/fuzz-stats.jsonl (docs/TESTING.md).
fuzz-ci: fuzz-build
	FUZZ_REPLAY_ONLY="fuzz_h5scan fuzz_h5volume" bash scripts/fuzz-ci.sh $(FUZZ) $(FUZZ_CI_SECONDS)

fuzz: fuzz-build
	bash scripts/fuzz-ci.sh $(FUZZ) $(FUZZ_SECONDS)

# Installs to the configure-time prefix (/usr/local), or to PREFIX (make install PREFIX=/opt/aptomo); DESTDIR
# stages it. Paths in the installed aptomo.pc and systemd unit are those of the prefix installed to.
install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD) $(ASAN) $(RELEASE) $(RELEASE)-O1 $(RELEASE)-Os $(RELEASE)-clang $(FUZZ)
