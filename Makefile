# mnist-edge: `make all` (install, train, export, check, bench) and `make test`.
# Each step is a file target, re-run only when its inputs change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ART    := artifacts
# Real data: point MNIST_EDGE_DATA at a folder with the MNIST files (downloaded into data/ if unset).
export MNIST_EDGE_DATA

STAMP  := $(VENV)/.installed
TRAIN_INPUTS := $(wildcard mnist_edge/pytorch/*.py) $(addprefix mnist_edge/core/,data.py metadata.py settings.py archs.py)

.PHONY: all install train export check bench bench-training report test lint clean help default-model toolchains web-vendor arm64 mcu

all: check bench-training bench report  ## install, train, export, check parity, benchmark, then the report

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Every extra of pyproject.toml: mnist_edge/core/deps.py reads them from it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	extras=$$($(BIN)/python -m mnist_edge.core.deps) && test -n "$$extras" \
	  && $(BIN)/python -m pip install -q -e ".[$$extras]"
	touch $@

install: $(STAMP) web-vendor  ## create .venv and install mnist-edge with all extras

# onnxruntime-web for the browser page (serve's in-browser mode, `export --format web`): pinned by
# web/npm/package-lock.json and web/ort-files.sha256, fetched here rather than committed (14 MB of wasm).
# --ignore-scripts: no package's install script runs. Without npm, the page asks POST /predict instead.
ORT_STAMP := mnist_edge/edge/static/ort/.vendored
$(ORT_STAMP): web/ort-files.sha256 web/npm/package-lock.json web/fetch_ort.py
	@if command -v npm >/dev/null 2>&1; then \
	  (cd web/npm && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
	    && $(PYTHON) web/fetch_ort.py && touch $@; \
	else echo "npm not found: onnxruntime-web not vendored, so export --format web and the browser tests skip"; fi

web-vendor: $(ORT_STAMP)  ## fetch onnxruntime-web (npm ci) and check it against web/ort-files.sha256

$(ART)/model.pth: $(STAMP) $(TRAIN_INPUTS)
	$(BIN)/mnist-edge train --out $(ART)

train: $(ART)/model.pth  ## train the default model (artifacts/model.pth, metrics, figures)

# The model for 16 KB-flash, 4 KB-RAM microcontrollers (about 2 minutes of training), as int8 C, checked
# bit for bit on the emulated Cortex-M0 and M4 with every other format of its folder.
MCU := $(ART)/mcu-16k
$(MCU)/model.pth: $(STAMP) $(TRAIN_INPUTS)
	$(BIN)/mnist-edge train --arch mcu-16k --out $(MCU)

mcu: $(MCU)/model.pth | toolchains  ## train mcu-16k, export its formats and check them (artifacts/mcu-16k)
	$(BIN)/mnist-edge export --format all --quantize --checkpoint $(MCU)/model.pth --out $(MCU)
	$(BIN)/mnist-edge check --artifacts $(MCU)

# What `export --format all --quantize` writes, from the format registry (mnist_edge/core/formats.py).
EXPORTS = $(addprefix $(ART)/,$(shell $(BIN)/python -m mnist_edge.core.formats all))
EXPORT_INPUTS := $(wildcard mnist_edge/pytorch/exporters/*.py mnist_edge/edge/runtimes/*.py) \
	mnist_edge/verify/export.py mnist_edge/verify/parity.py mnist_edge/core/formats.py \
	mnist_edge/edge/web.py $(wildcard mnist_edge/edge/static/*.*)

# One export run writes every format; the stamp stands for all of them ($(EXPORTS)).
$(ART)/.exported: $(ART)/model.pth $(EXPORT_INPUTS) | toolchains web-vendor
	$(BIN)/mnist-edge export --format all --quantize --checkpoint $(ART)/model.pth --out $(ART)
	touch $@

export: $(ART)/.exported  ## every format of the registry, fp32 and int8, each verified
	@echo "exported: $(EXPORTS)"

check: $(ART)/.exported  ## parity of every exported model against PyTorch on the test set
	$(BIN)/mnist-edge check --artifacts $(ART)

# The training benchmarks (accuracy on little data against a seed-style loop, training throughput; about
# 7 minutes) measure the training code, not the exported models: they re-run when that code changes.
# `make all` runs them right after training; `make bench` runs them first if they are missing or stale.
TRAIN_BENCHES := benchmarks/test_small_data.py benchmarks/test_training.py
$(ART)/.bench-training: $(STAMP) $(TRAIN_INPUTS) $(TRAIN_BENCHES) benchmarks/conftest.py
	MNIST_EDGE_ARTIFACTS=$(ART) $(BIN)/python -m pytest $(TRAIN_BENCHES) -q -p no:cacheprovider
	touch $@

bench-training: $(ART)/.bench-training  ## small-data accuracy and training throughput against a seed-style loop

bench: $(ART)/.exported $(ART)/.bench-training  ## latency, throughput, size and accuracy of every format (pytest-benchmark + mnist-edge bench)
	MNIST_EDGE_ARTIFACTS=$(ART) $(BIN)/python -m pytest benchmarks -q -p no:cacheprovider \
	  $(addprefix --ignore=,$(TRAIN_BENCHES)) --benchmark-json=$(ART)/benchmarks.json
	$(BIN)/mnist-edge bench --artifacts $(ART)
	@cat $(ART)/bench.md

# Reads only the result files already in $(ART) (what was not run says so): last in `make all`.
report: $(STAMP)  ## artifacts/report.html and report.md: one page of the run's results and figures
	$(BIN)/mnist-edge report --artifacts $(ART)

default-model: $(ART)/.exported  ## (maintainers) this run's verified ONNX model becomes the shipped default in the source tree
	$(BIN)/python tools/ship_default_model.py $(ART) mnist_edge/edge/assets

# Debian tools some tests and bench rows use: Chromium (the page's browser tests), the Cortex-M cross
# compiler, its C library and QEMU (the C model built, run and timed on emulated Cortex-M boards), QEMU user
# mode (ONNX Runtime's AVX2 kernels on any x86 machine). Each is a command or a file, and its package.
# Installed with apt where we can; elsewhere those skip, saying why.
APT_TOOLS := chromium:chromium arm-none-eabi-gcc:gcc-arm-none-eabi \
	/usr/lib/arm-none-eabi/newlib/libc.a:libnewlib-arm-none-eabi qemu-system-arm:qemu-system-arm \
	qemu-x86_64-static:qemu-user-static
toolchains:  ## install Chromium, the Cortex-M cross compiler and QEMU with apt, where possible
	@for pair in $(APT_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  { [ -e $$cmd ] || command -v $$cmd; } >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -q && apt-get install -y -q --no-install-recommends $$pkg; } >/dev/null 2>&1 \
	      || echo "$$pkg could not be installed with apt: the tests that need $$cmd will skip"; \
	  else echo "$$cmd is missing and apt is not available to root here: the tests that need it will skip"; fi; \
	done

# ARM cores emulated by QEMU user mode (`check --cpu cortex-a76`, tests/test_arm64.py): an arm64 Debian root
# and the aarch64 wheels of the venv's onnxruntime and ai-edge-litert, built once (about 2 minutes, 430 MB)
# under ~/.cache/mnist-edge/arm64, keyed by those versions. Without apt, debootstrap or the registries it says
# why in one line and the ARM64 rows and tests skip. `make test` builds it: only the tests and `check --cpu` need it.
arm64: $(STAMP)  ## the emulated ARM64 userland for `check --cpu CORE` (cached outside the repo)
	$(BIN)/python tools/arm64_userland.py

test: $(STAMP) toolchains web-vendor arm64  ## run the test suite (real-MNIST tests need MNIST_EDGE_DATA)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, and the import contracts (the edge side never imports torch)
	$(BIN)/ruff check mnist_edge tests benchmarks tools
	$(BIN)/lint-imports

clean:  ## remove generated artifacts (keeps .venv)
	rm -rf $(ART)/* $(ART)/.[!.]* .pytest_cache .benchmarks
