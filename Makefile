# ltxserve: the README names these targets. `make run` is the first command, `make test` the second.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU torch by default (a local wheel on these machines). GPU boxes: see docs/engine.md ("Installing on a GPU").
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.ltxserve-setup

.PHONY: setup run serve demo test lint format docs bench browser clean cluster cluster-stop cluster-clean bench-scale

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# Lightricks' reference implementation for the parity suite (tests/parity), without ltx-core's
	# declared torchaudio: PyPI's torchaudio is built for CUDA torch and, installed next to CPU torch,
	# breaks diffusers' LTX-2 import. Their other needs (einops, scipy; av, tqdm, pillow) are installed.
	$(BIN)/python -m pip install -q --no-deps ltx-core==1.0.0 ltx-pipelines==1.0.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ltxserve generate "a lighthouse on a cliff at dusk, waves crashing, seagulls calling" \
		--width 512 --height 320 --duration 3 --fps 24 --steps 8 --seed 7 --out out/first.mp4

run: demo
	$(BIN)/ltxserve serve

serve: setup
	$(BIN)/ltxserve serve

# Debian's Chromium for the playground's browser tests (skipped, with a message, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: browser tests will be skipped"

test: setup browser
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Generated from config.Settings: the settings page and the Kubernetes ConfigMap/Secret keys.
docs: setup
	$(BIN)/python -m ltxserve.config docs/settings.md
	$(BIN)/python -m ltxserve.manifests
	$(BIN)/mkdocs build --strict

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache data out test-artifacts site

# Scale-out on this machine, no Docker: local PostgreSQL (own database), SeaweedFS S3, 2 API nodes,
# 2 workers on the tiny model (scripts/cluster.sh; stops what it started, by PID).
cluster: setup
	scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

cluster-clean:
	scripts/cluster.sh clean

bench-scale: setup
	$(BIN)/python bench/scale.py
