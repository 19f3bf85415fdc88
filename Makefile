# Set-up is part of every target: the first call creates .venv/ (about a minute),
# later calls reuse it and only reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench schema docs gpu-wheels
demo: $(STAMP)  ## run the demo workflow offline on tiny models
	$(VENV)/bin/runner run workflows/demo.yaml

test: $(STAMP)  ## run the test suite
	$(VENV)/bin/python -m pytest -q --durations=25

bench: $(STAMP)  ## runner vs hand-written diffusers scripts, sweeps (batched too), the watch loop, a cached run's start, the refiner's skipped decode, the job server (see bench/README.md)
	$(VENV)/bin/python bench/demo_chain.py
	$(VENV)/bin/python bench/sweep_reuse.py
	$(VENV)/bin/python bench/sweep_batch.py
	$(VENV)/bin/python bench/watch_loop.py
	$(VENV)/bin/python bench/ray_sweep.py
	$(VENV)/bin/python bench/start_time.py --instructions
	$(VENV)/bin/python bench/refiner_decode.py
	$(VENV)/bin/python bench/server_latency.py

schema: $(STAMP)  ## regenerate the committed JSON Schema
	$(VENV)/bin/runner schema --out schemas/workflow.schema.json --force

docs: $(STAMP)  ## regenerate the committed references (docs/reference/cli.md, nodes.md, export-example.md, api.md)
	$(VENV)/bin/python -m runner.cli.reference docs/reference
	$(VENV)/bin/python -m runner.cli.export_example docs/reference
	$(VENV)/bin/python -m runner.cli.api_reference docs/reference

$(STAMP): pyproject.toml
	@echo "setting up the environment in $(VENV)/ (pip installs runner and its libraries: about a minute the first time)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

gpu-wheels: $(STAMP)  ## download the wheels bench/gpu/run.sh installs on a GPU machine without network (bench/gpu/wheels/)
	$(VENV)/bin/python -m pip download --quiet --only-binary=:all: --no-deps -d bench/gpu/wheels -r bench/gpu/requirements.txt
	@du -sh bench/gpu/wheels
