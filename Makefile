# ctas7 — two commands do everything on a fresh machine:
#   make run    set up .venv, build, install, run the main job
#   make test   set up .venv, build, install, run the whole test suite

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
RUN_ARGS ?= hft-cluster --duration 10

.PHONY: run test test-fast install build bench peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q --upgrade pip "setuptools>=68" wheel "Cython>=3.0" "numpy>=1.26"
	$(PIP) install -q --no-build-isolation -e ".[test]"

build: $(PY)
	$(PY) setup.py -q build_ext --inplace

run: install build
	$(VENV)/bin/ctas7-intel $(RUN_ARGS)

test: install build
	$(PY) -m pytest -q

test-fast: build
	$(PY) -m pytest -q -m "not slow" -x

bench: install build
	$(PIP) install -q -e ".[bench]" --no-build-isolation
	cd asv_bench && ../$(VENV)/bin/asv machine --yes && ../$(VENV)/bin/asv run --python=same --quick --show-stderr && ../$(VENV)/bin/asv publish

peers: install build
	$(PIP) install -q -e ".[bench]" --no-build-isolation
	$(PY) asv_bench/peers.py

clean:
	rm -rf build ctas7/_core/*.c ctas7/_core/*.so ctas7/_core/*.html
