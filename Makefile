# The two commands of the README:
#   make demo   set up .venv and run the main job on the bundled default (digits example)
#   make test   set up .venv (+ ARM toolchain and QEMU) and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake
PYTEST_ARGS ?=

.PHONY: setup demo test tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tf,dev]'
	touch $(STAMP)

setup: $(STAMP)

# Cross toolchain and QEMU for the board tests (Debian/Ubuntu, needs root or sudo).
tools:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && command -v cmake >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS); \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS); \
	else echo "warning: install $(APT_PKGS) for the board tests (they are skipped without them)"; fi

demo: $(STAMP)
	$(PY) examples/digits/run.py --out out/digits

test: $(STAMP) tools
	$(PY) -m pytest -n 2 -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf .tc_cache out build dist
