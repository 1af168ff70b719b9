# Kaggle Digit Recognizer: `make submit` runs every stage that is out of date, then uploads.
# Targets are the files each stage writes; the phony targets are thin aliases for them. Every
# rule depends on the code it runs (derived from the imports: pipeline/codedeps.py), the params
# it reads (a params.json rewritten only when they change) and the files it reads.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := install
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3

# What to run: MODEL=<a model of pipeline/modeling/models.py>, ensemble or blend; CV=1 for the
# cross-validated run, DATA=<competition zip or folder, or kaggle>, FORCE=1 to fetch the data again,
# FULL_DATA=1 to train on every labelled row, OUT=<folder> for all outputs, and parameter overrides
# (params.toml).
MODEL ?= conv_gru
CV ?=
DATA ?=
FORCE ?=
OUT ?=
EPOCHS ?=
BATCH_SIZE ?=
LR ?=
SEED ?=
PARAMS ?=
MEMBERS ?=
FOLDS ?=
TRIALS ?=
FULL_DATA ?=
KERNEL ?=
# PRESET=<name>: a model and its parameters at once, from params.toml's [presets] (`make kernel PRESET=gpu`).
PRESET ?=
ifneq ($(OUT),)
export PIPELINE_OUT := $(abspath $(OUT))
endif

# Goals that check no parameters, and those that never run the data stage either.
QUIET_GOALS := install help clean lint format test test-fast kaggle-image tensorboard submissions
NO_DATA_GOALS := $(QUIET_GOALS) results frontier bench-layers kernel kernel-wait submit-kernel
GOALS := $(or $(MAKECMDGOALS),install)
DATA_CHECK := $(filter-out $(NO_DATA_GOALS),$(GOALS))

# Everything Make needs from Python comes from one call while it parses (pipeline/makevars.py, standard
# library only, so this works before .venv exists): the paths (pipeline/config.py), the model registry
# (pipeline/modeling/models.py), the overrides the shorthands stand for, checked with params.toml, the
# folds, members and blend models, and the code each module runs (CODE.<module>, from the imports:
# pipeline/codedeps.py). Its file, .make/vars/<hash of these inputs>.mk, is reused while params.toml and
# the pipeline's .py files are older than it, so `make help` starts no Python. A goal that may run the
# data stage asks every time: whether the data in place is stale (pipeline/datasource.py: none yet,
# another DATA=, or the demo sample while the competition's files can now be had) is no file's time.
MAKEVARS_INPUTS := MODEL CV PRESET PARAMS EPOCHS BATCH_SIZE LR SEED MEMBERS FOLDS TRIALS FULL_DATA \
	PIPELINE_OUT KAGGLE_KERNEL_RUN_TYPE KAGGLE_ROOT
quote = '$(subst ','\'',$(1))'
MAKEVARS_ARGS := $(foreach v,$(MAKEVARS_INPUTS),$(call quote,$(v)=$(strip $($(v))))) \
	$(call quote,MODEL_ORIGIN=$(origin MODEL))
MAKEVARS := $(shell f=.make/vars/$$(printf '%s\n' $(call quote,$(PYTHON)) $(MAKEVARS_ARGS) | cksum | tr ' ' -).mk; \
	if [ -z '$(DATA_CHECK)' ] && [ -f "$$f" ] && [ -z "$$(find params.toml pipeline -newer "$$f" \
		\( -name '*.py' -o -name params.toml -o -type d ! -name __pycache__ \) -print -quit)" ]; then \
		echo "vars-ok $$f"; \
	else $(PYTHON) -m pipeline.makevars --out "$$f" $(if $(DATA_CHECK),--data-check $(call quote,$(DATA))) \
		$(MAKEVARS_ARGS); fi)
ifeq ($(firstword $(MAKEVARS)),vars-ok)
include $(word 2,$(MAKEVARS))
else ifeq ($(firstword $(MAKEVARS)),error:)
$(error $(MAKEVARS))
else
$(error PYTHON=$(PYTHON) is missing or older than Python 3.11 (tomllib): pass PYTHON=python3.11 or newer)
endif
DATA_STALE := $(filter stale,$(wordlist 3,3,$(MAKEVARS)))

# Bad parameters (and a PRESET= or shorthand that cannot be) are refused before any stage runs.
ifneq ($(filter-out $(QUIET_GOALS),$(GOALS)),)
$(if $(MAKEVARS_ERROR),$(error $(MAKEVARS_ERROR)))
endif

# Inside a Kaggle notebook (KAGGLE_KERNEL_RUN_TYPE is set) the notebook's own interpreter and
# packages are used: no venv, no pip (offline, and pip would swap its GPU builds for CPU wheels).
ifeq ($(KAGGLE_KERNEL_RUN_TYPE),)
VENV ?= .venv
# JAX trains the seed model ~2x faster here than TensorFlow (README, "Speed"); EXTRAS=dev for TF alone;
# search: Optuna, for `make search`.
EXTRAS ?= jax,dev,search
# uv installs the same pins as pip in half the time (a clone's venv here: 20 s against 53 s, AMD EPYC Zen 5,
# both with their caches warm); pip is the fallback, and INSTALLER=pip's choice (uv reads no pip.conf: an index
# reached only through pip's configuration needs pip).
INSTALLER ?= uv
UV := uv==0.13.9
PY := $(VENV)/bin/python
VENV_OK := $(VENV)/.installed
# The venv holds the project's dependencies, not the project: every command runs from the checkout.
$(VENV_OK): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@reqs=$$($(PYTHON) -m pipeline.deps --requirements '$(EXTRAS)') && \
	if [ '$(INSTALLER)' = uv ] && $(PY) -m pip install --quiet '$(UV)' && \
		$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode $$reqs; then \
		echo "installed with $(UV)"; \
	else \
		echo "installing with pip"; \
		$(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet $$reqs; \
	fi
	touch $@
else
PY := $(PYTHON)
VENV_OK := $(STATE)/packages-checked
$(VENV_OK): pyproject.toml
	$(PY) -m pipeline.deps
	mkdir -p $(@D) && touch $@
endif

MODEL_DIR := $(MODELS)/$(MODEL)

# Every stage runs through pipeline/stage.py, which locks its target (a second run that needs it
# waits, saying for whom, or with WAIT=0 refuses) and does not make again what another run made.
WAIT ?=
ifneq ($(WAIT),)
export PIPELINE_WAIT := $(WAIT)
endif
STAGE = @STAGE_DEPS='$^' $(PY) -m pipeline.stage $@

##@ Main
.PHONY: install data features train submission submit submissions

install: $(VENV_OK) ## Build .venv with pyproject.toml's dependencies (redone only when it changes)

data: $(RAW)/source.json ## Place and validate train/test CSVs in data/raw (DATA=zip|folder|kaggle, FORCE=1)

features: $(PROCESSED)/features.json ## Cache the images as float32 28x28 row sequences (train.npz, test.npz)

train: $(MODEL_DIR)/metrics.json ## Train MODEL (default conv_gru) on one split; EPOCHS=, BATCH_SIZE=, LR=, SEED=, PARAMS=

# A cross-validated submission goes through its plan (pipeline/budget.py): it prints the recipe's time on
# this machine, and with BUDGET=<minutes> fits the recipe to it, then runs this same target with PLANNED=1.
BUDGET ?=
PLANNED ?=
ifeq ($(if $(CV),$(PLANNED),-),)
submission: $(PROCESSED)/features.json | $(VENV_OK) ## Predict test.csv and write the checked submission CSV (CV=1: the k-fold models' mean; BUDGET=<minutes>)
	+@$(PY) -m pipeline.budget --model $(MODEL) $(if $(BUDGET),--budget $(BUDGET)) $(OVERRIDES)
else
$(if $(BUDGET),$(if $(PLANNED),,$(error BUDGET= plans a cross-validated run: add CV=1 (or MODEL=blend))))
submission: $(SUBMISSION)
endif

submissions: | $(VENV_OK) ## List your past Kaggle submissions with their scores
	$(PY) -m pipeline.kaggle.submissions

ifeq ($(KERNEL),)
submit: $(SUBMISSION) ## Everything out of date, then upload to Kaggle (or say why not); KERNEL=1: the notebook's
	@STAGE_DEPS='FORCE $(SUBMISSION)' $(PY) -m pipeline.stage $(basename $(SUBMISSION)).upload.json \
		-m pipeline.kaggle.submit --model $(MODEL) $(if $(CV),--cv)
endif

# $@.tmp becomes $@ only when the two differ, so that what depends on $@ reruns only for a change.
MOVE_IF_CHANGED = if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

# A DATA= file counts by its bytes, not its date: the same zip again with a newer date (downloaded or copied
# again) remakes nothing, where every model would otherwise retrain. Its hash, taken by every make that needs
# the data (the competition's 15 MB zip: 0.05 s), is kept in the output root's state and changes only with the
# bytes; the first one takes the file's date, so that adding it remakes nothing either. A folder counts by its
# date (DATA_STALE covers a folder's files).
DATA_PATH := $(filter-out kaggle,$(wildcard $(DATA)))
DATA_DEP := $(if $(DATA_PATH),$(if $(wildcard $(DATA_PATH)/.),$(DATA_PATH),$(STATE)/data.sha256))
$(STATE)/data.sha256: FORCE
	@mkdir -p $(@D) && sha256sum < '$(DATA_PATH)' > $@.tmp && \
		if [ -f $@ ]; then $(MOVE_IF_CHANGED); else touch -r '$(DATA_PATH)' $@.tmp && mv -f $@.tmp $@; fi

# The data stage runs when its code or the DATA= file changes, with FORCE=1, or when
# pipeline/datasource.py calls the data in place stale (DATA_STALE, above). Nothing is recorded
# before it succeeds.
$(RAW)/source.json: $(CODE.pipeline.dataset) $(DATA_DEP) $(if $(FORCE)$(DATA_STALE),FORCE) | $(VENV_OK)
	$(STAGE) -m pipeline.dataset $(if $(DATA),--data '$(DATA)') $(if $(FORCE),--force)

$(PROCESSED)/features.json: $(RAW)/source.json $(CODE.pipeline.features)
	$(STAGE) -m pipeline.features

# Rewritten only when the parameters a model reads change, so only then does it retrain.
$(MODELS)/%/params.json: FORCE | $(VENV_OK)
	@$(PY) -m pipeline.params --model $* --out $@ $(OVERRIDES)

$(MODELS)/%/predict.json: FORCE | $(VENV_OK)
	@$(PY) -m pipeline.params --predict --model $* --out $@ $(OVERRIDES)

$(MODELS)/%/metrics.json: $(MODELS)/%/params.json $(PROCESSED)/features.json $(CODE.pipeline.modeling.train)
	$(STAGE) -m pipeline.modeling.train --model $*

# Ensemble members are separate targets: `make -j2 train MODEL=ensemble` trains two at a time,
# and a finished member is never retrained (adding members only trains the new ones).
ifeq ($(MODEL),ensemble)
MEMBER_METRICS := $(foreach i,$(MEMBER_NUMBERS),$(MODELS)/ensemble/member-$(i)/metrics.json)

$(MODELS)/ensemble/member-%/metrics.json: $(MODELS)/ensemble/params.json $(PROCESSED)/features.json $(CODE.pipeline.modeling.ensemble)
	$(STAGE) -m pipeline.modeling.ensemble member --index $*

$(MODELS)/ensemble/metrics.json: $(MODELS)/ensemble/params.json $(MEMBER_METRICS) $(CODE.pipeline.modeling.ensemble)
	$(STAGE) -m pipeline.modeling.ensemble assemble --members $(N_MEMBERS)
endif

.PRECIOUS: $(MODELS)/%/params.json $(MODELS)/%/predict.json $(MODELS)/%/metrics.json

ifeq ($(CV),)
$(SUBMISSION): $(MODEL_DIR)/metrics.json $(MODEL_DIR)/predict.json $(PROCESSED)/features.json $(CODE.pipeline.modeling.predict)
	$(STAGE) -m pipeline.modeling.predict --model $(MODEL)
else
$(SUBMISSION): $(MODEL_DIR)/cv/metrics.json $(CODE.pipeline.modeling.predict)
	$(STAGE) -m pipeline.modeling.predict --model $(MODEL) --cv
endif

##@ Report
.PHONY: report tensorboard results

RESULTS_FROM ?=
results: | $(VENV_OK) ## docs/results.md from the files the runs wrote (RESULTS_FROM="<output roots>"), and the README's table
	$(PY) -m pipeline.evaluate.results $(if $(RESULTS_FROM),--from $(RESULTS_FROM))

ifeq ($(CV),)
report: $(REPORTS)/$(MODEL)/index.html ## Curves, confusion matrix, worst errors and per-class scores for MODEL (CV=1: out-of-fold)

$(REPORTS)/%/index.html: $(MODELS)/%/metrics.json $(CODE.pipeline.evaluate.report)
	$(STAGE) -m pipeline.evaluate.report --model $*
endif

tensorboard: | $(VENV_OK) ## Serve the training curves in logs/ (http://localhost:6006)
	$(PY) -m tensorboard.main --logdir $(LOGS)

# Cross-validation, blends and comparisons (mk/cv.mk), settings searched (mk/search.mk), speed (mk/bench.mk),
# Kaggle notebooks (mk/kernel.mk).
include $(sort $(wildcard mk/*.mk))

##@ Quality
.PHONY: test test-fast kaggle-image lint format

# ruff, configured in pyproject.toml: pyflakes, pycodestyle, import order, line length, one code style.
lint: $(VENV_OK) ## Check the code with ruff (lint and format, nothing rewritten); CI runs it before the tests
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV_OK) ## Rewrite the code to ruff's style and fix what it can (imports, syntax)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The stand-in for Kaggle's notebook image, where the notebook tests run the pushed script: a venv of exactly
# tests/kaggle_image/requirements.txt on Python 3.12 (the image's) when there is one, else on the Python at
# hand (said in one line); kept outside the checkout, named by the list's hash (tests/kaggle_image/build.py).
# Pins that do not install leave a one-line reason there, and the notebook tests skip with it.
KAGGLE_IMAGE_PYTHON ?= $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),\
	$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
KAGGLE_IMAGE_BUILD = $(PYTHON) tests/kaggle_image/build.py --python '$(KAGGLE_IMAGE_PYTHON)'

kaggle-image: ## Build the stand-in for Kaggle's notebook image (its package versions) for the tests
	@$(KAGGLE_IMAGE_BUILD) --retry >/dev/null

# pytest-xdist workers: a test file stays on one worker (its fixtures are built once), and the files start in
# tests/conftest.py's order, the longest first (xdist would put the files with fewest tests last). The whole
# suite gets one worker more than the cores: its tests spend time waiting on the processes they start (make,
# kill points, a fake Kaggle's polls), which a third worker fills (pytest 348 s against 367 s, twice each, on
# 2 cores of the Zen 5). The fast tier computes in-process, so one per core (a third: 89 s against 74 s).
# TEST_WORKERS=<n> sets both.
SUITE_WORKERS = $(or $(TEST_WORKERS),$(shell echo $$(( $$(nproc) + 1 ))))
FAST_WORKERS = $(or $(TEST_WORKERS),$(shell nproc))
PYTEST := $(PY) -m pytest --dist loadfile --no-loadscope-reorder

test: $(VENV_OK) ## The whole suite, what CI runs, on every core and one more (TEST_WORKERS=, PYTEST_ARGS=)
	@env=$$($(KAGGLE_IMAGE_BUILD)) && echo "KAGGLE_IMAGE_ENV=$$env $(PYTEST) -n $(SUITE_WORKERS) $(PYTEST_ARGS)" && \
		KAGGLE_IMAGE_ENV=$$env $(PYTEST) -n $(SUITE_WORKERS) $(PYTEST_ARGS)

test-fast: $(VENV_OK) ## The fast tier (~2 min): all but the tests that train for long or run Make end to end
	$(PYTEST) -n $(FAST_WORKERS) -m 'not slow' $(PYTEST_ARGS)

##@ Housekeeping
.PHONY: help clean FORCE

# The sections in the order a user meets them: the Makefile's, the included ones (mk/), then Quality
# and Housekeeping last.
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {last = ($$0 ~ /Quality|Housekeeping/); line = "\n" substr($$0, 5)} \
		/^[a-z-]+:.*## / {line = sprintf("  %-14s %s", $$1, $$2)} \
		line != "" {if (last) tail = tail line "\n"; else print line; line = ""} END {printf "%s", tail}' \
		$(filter-out .make/%,$(MAKEFILE_LIST))

clean: ## Remove generated data, models, reports, submissions and benchmarks (keeps .venv)
	rm -rf $(STATE) $(RAW) $(PROCESSED) $(DOWNLOAD) $(MODELS) $(REPORTS) $(LOGS) $(BENCH) $(KERNEL_DIR) \
		$(SUBMISSIONS)/*.csv $(SUBMISSIONS)/*.json

FORCE:
