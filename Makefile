# Quick start: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench photos clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned to the CPU build that lies on local disk; a plain `torch` would pull CUDA.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/blinddps demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/operators.py

# Natural photographs for training the image prior, from Debian wallpaper packages
# (downloaded as .deb files and unpacked locally; nothing is installed, nothing committed).
photos:
	bash scripts/get_photos.sh data/photos

clean-venv:
	rm -rf $(VENV)
