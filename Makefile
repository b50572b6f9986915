# lattice_plan: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run the main job on the built-in phantom into demo-out/
#   make test   create .venv if needed, install, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Numba's on-disk cache lives beside the sources (__pycache__) so later runs skip compilation.

.PHONY: demo test bench lint format dicom3tools clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# dciodvfy (Debian package dicom3tools) validates every DICOM object we write.
dicom3tools:
	@command -v dciodvfy >/dev/null 2>&1 || { \
	  echo "installing dicom3tools (dciodvfy)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools >/dev/null; }

demo: $(STAMP)
	$(VENV)/bin/lattice-plan demo --out demo-out

test: $(STAMP) dicom3tools
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check lattice_plan tests benchmarks examples
	$(VENV)/bin/ruff format --check lattice_plan tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format lattice_plan tests benchmarks examples
	$(VENV)/bin/ruff check --fix lattice_plan tests benchmarks examples

clean:
	rm -rf demo-out .pytest_cache build *.egg-info
