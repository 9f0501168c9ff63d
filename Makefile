# Two commands for a new machine: `make demo` and `make test`. Each builds .venv on its own.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch goes in first, pinned, so nothing later pulls a CUDA build onto a CPU machine.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gptscope demo

# Every test runs once. The trained-behaviour tests (marked `learned`) run on torch's plain
# (non-vectorised) CPU kernels, as on a machine without AVX: their bounds must hold on any
# CPU (tests/README.md has their spread over kernels, threads and seeds). Each pytest uses
# one torch thread, so two lanes share the two cores. Lane 2 takes every test of WHOLE2
# (their trained fixtures, the stories base, the demo model and the red-teaming lab, are
# then built once) and the learned tests of LANE2; lane 1 the rest of the suite and then
# every other learned test.
WHOLE2 := tests/align tests/report/test_demo.py tests/evals/redteam
LANE2 := tests/steering tests/report
test: $(STAMP) browser
	@( ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -p no:cacheprovider $(WHOLE2); \
	   whole=$$?; ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -m learned \
	   -p no:cacheprovider $(LANE2) $(addprefix --ignore=,$(WHOLE2)); learned=$$?; \
	   test $$whole -eq 0 && test $$learned -eq 0 ) > $(VENV)/lane2.log 2>&1 & lane2=$$!; \
	$(BIN)/python -m pytest -m "not learned" $(addprefix --ignore=,$(WHOLE2)); suite=$$?; \
	echo "trained-behaviour tests under ATEN_CPU_CAPABILITY=default (any-CPU kernels):"; \
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -m learned -p no:cacheprovider \
	    $(addprefix --ignore=,$(LANE2) $(WHOLE2)); lane1=$$?; \
	wait $$lane2; second=$$?; \
	echo "lane 2: every test in $(WHOLE2), then the learned ones in $(LANE2), same kernels:"; \
	cat $(VENV)/lane2.log; \
	test $$suite -eq 0 && test $$lane1 -eq 0 && test $$second -eq 0

# Browser tests render reports in Debian's headless Chromium; as root we install it,
# otherwise those tests skip (they fail in CI, where CI=true, if it is missing).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not found; browser tests will skip (apt-get install chromium)"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info
