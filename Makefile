# Two commands for a fresh machine (see README):
#   make demo   set up, then run the whole path on the sample data
#   make test   set up, lint (ruff), then run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/rawtext
export TORCH_EXTENSIONS_DIR ?= $(CACHE)/torch_extensions
export KENLM_BIN ?= $(CACHE)/kenlm/bin

.PHONY: setup demo test bench lint clean-demo

setup: $(VENV)/.installed $(KENLM_BIN)/lmplz $(TORCH_EXTENSIONS_DIR)/.warm

# Re-runs only when pyproject.toml changes. torch goes first, pinned, so that no other
# package drags in a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# KenLM's lmplz/build_binary are built once from the kenlm sdist and cached (~3 min).
$(KENLM_BIN)/lmplz:
	bash scripts/build_kenlm.sh $(KENLM_BIN)

# DeepSpeed compiles its CPU communication op on first use (~60 s): do it once here.
$(TORCH_EXTENSIONS_DIR)/.warm: $(VENV)/.installed
	$(BIN)/python -m training warm-ops
	mkdir -p $(TORCH_EXTENSIONS_DIR) && touch $@

demo: setup
	bash scripts/demo.sh

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	bash benchmarks/run_all.sh

lint: setup
	$(BIN)/ruff check curation training tests benchmarks

clean-demo:
	rm -rf out/demo
