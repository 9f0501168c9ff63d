# Two commands for a new machine: `make demo` and `make test`. Each builds .venv on its own.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch goes in first, pinned, so nothing later pulls a CUDA build onto a CPU machine.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gptscope demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info
