# cliptune: `make reproduce` runs the workbook, `make test` checks it. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KERNEL := cliptune
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
TEST_OUT := build/test
# the notebooks' fast mode and private output folders, so a test run never touches the
# committed figures, results and checkpoints
TEST_ENV := CLIPTUNE_FAST_DEV_RUN=1 CLIPTUNE_RESULTS=$(CURDIR)/$(TEST_OUT)/results \
            CLIPTUNE_FIGURES=$(CURDIR)/$(TEST_OUT)/figures \
            CLIPTUNE_CHECKPOINTS=$(CURDIR)/$(TEST_OUT)/checkpoints HF_HUB_OFFLINE=1

.PHONY: setup zoo notebooks reproduce test unit nbval bench clean

setup: $(VENV)/.installed

# torch first (pip takes it from this machine's disk where it lies there), then the pinned rest,
# then the Jupyter kernel that papermill and JupyterLab use
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (cliptune)"
	touch $@

zoo: setup   ## pretrain any tiny CLIP whose weights are missing from data/zoo
	$(BIN)/python -m cliptune.models pretrain

notebooks: setup   ## rebuild notebooks/*.ipynb from notebooks/src/*.py (clears outputs)
	$(BIN)/python tools/build_notebooks.py

reproduce: setup zoo   ## run every notebook in order, in place; times them (benchmarks/results)
	$(BIN)/python benchmarks/bench_reproduce.py --kernel $(KERNEL)

unit: setup
	$(TEST_ENV) $(BIN)/python -m pytest tests -q

nbval: setup
	$(TEST_ENV) $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=1200 -p no:cacheprovider notebooks -q

test: setup   ## unit tests, then every notebook in fast mode under nbval (one pytest run)
	rm -rf $(TEST_OUT)
	$(TEST_ENV) $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=1200 -q

bench: setup   ## speed and memory goals (never part of the tests)
	$(BIN)/python benchmarks/bench_prompt_step.py
	$(BIN)/python benchmarks/bench_pretrain.py

clean:
	rm -rf build data/cache data/checkpoints
