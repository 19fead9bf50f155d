# mnist-edge: `make all` (install, train, export, check, bench) and `make test`.
# Each step is a file target, re-run only when its inputs change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ART    := artifacts
# Real data: point MNIST_EDGE_DATA at a folder with the MNIST files (downloaded into data/ if unset).
export MNIST_EDGE_DATA

STAMP  := $(VENV)/.installed
TRAIN_INPUTS := $(addprefix mnist_edge/,train.py models.py data.py metadata.py checkpoint.py)

.PHONY: all install train export check bench test lint clean help default-model

all: check bench  ## install, train, export, check parity, benchmark

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,serve,dev]'
	touch $@

install: $(STAMP)  ## create .venv and install mnist-edge with all extras

$(ART)/model.pth: $(STAMP) $(TRAIN_INPUTS)
	$(BIN)/mnist-edge train --out $(ART)

train: $(ART)/model.pth  ## train the default model (artifacts/model.pth, metrics, figures)

EXPORTS := $(addprefix $(ART)/,model.ts model.int8.ts model.onnx model.int8.onnx)
EXPORT_INPUTS := $(addprefix mnist_edge/,export.py parity.py runtimes.py formats.py)

# One export run writes all four files; the stamp stands for all of them.
$(ART)/.exported: $(ART)/model.pth $(EXPORT_INPUTS)
	$(BIN)/mnist-edge export --format all --quantize --checkpoint $(ART)/model.pth --out $(ART)
	touch $@

export: $(ART)/.exported  ## TorchScript + ONNX, fp32 and int8, each verified

check: $(ART)/.exported  ## parity of every exported model against PyTorch on the test set
	$(BIN)/mnist-edge check --artifacts $(ART)

bench: $(ART)/.exported  ## latency, throughput, size and accuracy of every format (pytest-benchmark + mnist-edge bench)
	MNIST_EDGE_ARTIFACTS=$(ART) $(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-json=$(ART)/benchmarks.json
	$(BIN)/mnist-edge bench --artifacts $(ART)
	@cat $(ART)/bench.md

default-model: $(ART)/.exported  ## copy this run's verified ONNX model into the package as the shipped default
	$(BIN)/python -m mnist_edge.ship $(ART)

test: $(STAMP)  ## run the test suite (real-MNIST tests need MNIST_EDGE_DATA)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check mnist_edge tests benchmarks

clean:  ## remove generated artifacts (keeps .venv)
	rm -rf $(ART)/* .pytest_cache .benchmarks
