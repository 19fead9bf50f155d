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

.PHONY: all install train export check bench test lint clean help

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

test: $(STAMP)  ## run the test suite (real-MNIST tests need MNIST_EDGE_DATA)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check mnist_edge tests benchmarks

clean:  ## remove generated artifacts (keeps .venv)
	rm -rf $(ART)/* .pytest_cache .benchmarks
