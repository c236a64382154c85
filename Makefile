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

LAB_SETTINGS := build/lab/settings/@jupyterlab/docmanager-extension

.PHONY: setup zoo notebooks reproduce test unit nbval browser lab scratch bench clean

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

browser: setup   ## only the JupyterLab-in-Chromium test (installs chromium with apt-get as root)
	$(TEST_ENV) $(BIN)/python -m pytest tests/test_browser.py -q -rs

# JupyterLab on the tracked notebooks with autosave off: nothing is stored unless you save
lab: setup
	mkdir -p $(LAB_SETTINGS)
	echo '{"autosave": false}' > $(LAB_SETTINGS)/plugin.jupyterlab-settings
	JUPYTERLAB_SETTINGS_DIR=$(CURDIR)/build/lab/settings $(BIN)/jupyter lab notebooks

# JupyterLab on copies under build/scratch: experiment freely, git status stays clean
scratch: setup
	mkdir -p build/scratch && cp -n notebooks/*.ipynb build/scratch/
	$(BIN)/jupyter lab build/scratch

test: setup   ## unit tests (bad inputs, parameters, the browser test), then every notebook in fast mode under nbval
	rm -rf $(TEST_OUT)
	$(TEST_ENV) $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=1200 -q -rs

bench: setup   ## speed and memory goals (never part of the tests)
	$(BIN)/python benchmarks/bench_prompt_step.py
	$(BIN)/python benchmarks/bench_pretrain.py

clean:
	rm -rf build data/cache data/checkpoints
