# lattice_plan: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run the main job on the built-in phantom into demo-out/
#   make test   create .venv if needed, install, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Numba's on-disk cache lives beside the sources (__pycache__) so later runs skip compilation.

.PHONY: demo test bench lint format dicom3tools mesa-egl chromium clean

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

# Off-screen 3D rendering (pyvista/VTK without a display) uses the VTK wheel's EGL window with
# Mesa's software renderer: Debian packages libegl1, libegl-mesa0 and libgl1-mesa-dri.
mesa-egl:
	@{ { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q libEGL_mesa.so.0 \
	   && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; } || { \
	  echo "installing Mesa EGL (off-screen 3D rendering)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null; }

# The HTML viewer's tests drive headless Chromium through chromedriver (Debian packages
# chromium and chromium-driver); nothing is downloaded at test time.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "installing chromium and chromium-driver (HTML viewer tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: $(STAMP) mesa-egl
	$(VENV)/bin/lattice-plan demo --out demo-out

test: $(STAMP) dicom3tools mesa-egl chromium
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: $(STAMP) mesa-egl chromium
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check lattice_plan tests benchmarks examples
	$(VENV)/bin/ruff format --check lattice_plan tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(VENV)/bin/ruff format lattice_plan tests benchmarks examples
	$(VENV)/bin/ruff check --fix lattice_plan tests benchmarks examples

clean:
	rm -rf demo-out .pytest_cache build *.egg-info
