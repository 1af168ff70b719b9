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
ifneq ($(shell $(PYTHON) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null),True)
$(error PYTHON=$(PYTHON) is missing or older than Python 3.11 (tomllib): pass PYTHON=python3.11 or newer)
endif

# What to run: MODEL=conv_gru|lstm|mlp|cnn|ensemble|blend, CV=1 for the cross-validated run,
# DATA=<competition zip or folder, or kaggle>, FORCE=1 to fetch the data again, FULL_DATA=1 to
# train on every labelled row, OUT=<folder> for all outputs, and parameter overrides (params.toml).
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
ifneq ($(PRESET),)
PRESET_MODEL := $(shell $(PYTHON) -m pipeline.params --preset '$(PRESET)' model 2>&1)
$(if $(filter error:%,$(PRESET_MODEL)),$(error $(PRESET_MODEL)))
ifneq ($(filter command line,$(origin MODEL)),)
$(if $(filter-out $(PRESET_MODEL),$(MODEL)),$(error PRESET=$(PRESET) trains MODEL=$(PRESET_MODEL): drop MODEL=$(MODEL)))
endif
MODEL := $(PRESET_MODEL)
PRESET_OVERRIDES := $(shell $(PYTHON) -m pipeline.params --preset '$(PRESET)' overrides)
endif
ifeq ($(MODEL),blend)
CV := 1
endif

# All paths come from pipeline/config.py (standard library only, so this works before .venv exists).
ifneq ($(OUT),)
export PIPELINE_OUT := $(abspath $(OUT))
endif
# Make 4.3's $(shell) does not see exported variables: pass OUT= to the parse-time calls by hand.
SHELL_ENV := $(if $(OUT),PIPELINE_OUT='$(PIPELINE_OUT)')
CONFIG_VARS := $(shell $(SHELL_ENV) $(PYTHON) -m pipeline.config $(MODEL) $(CV))
$(if $(filter SUBMISSION=%,$(CONFIG_VARS)),,$(error pipeline.config failed: run `$(PYTHON) -m pipeline.config` to see why))
$(foreach v,$(CONFIG_VARS),$(eval $(v)))

# Inside a Kaggle notebook (KAGGLE_KERNEL_RUN_TYPE is set) the notebook's own interpreter and
# packages are used: no venv, no pip (offline, and pip would swap its GPU builds for CPU wheels).
ifeq ($(KAGGLE_KERNEL_RUN_TYPE),)
VENV ?= .venv
# JAX trains the seed model ~2x faster here than TensorFlow (README, "Speed"); EXTRAS=dev for TF alone;
# search: Optuna, for `make search`.
EXTRAS ?= jax,dev,search
PY := $(VENV)/bin/python
VENV_OK := $(VENV)/.installed
# The venv holds the project's dependencies, not the project: every command runs from the checkout.
$(VENV_OK): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $$($(PYTHON) -m pipeline.deps --requirements '$(EXTRAS)')
	touch $@
else
PY := $(PYTHON)
VENV_OK := $(STATE)/packages-checked
$(VENV_OK): pyproject.toml
	$(PY) -m pipeline.deps
	mkdir -p $(@D) && touch $@
endif

# CODE.<module>: the pipeline's .py files that module runs (regenerated when any of them changes).
include $(STATE)/code.mk
$(STATE)/code.mk: $(wildcard pipeline/*.py pipeline/*/*.py)
	@mkdir -p $(@D) && $(PYTHON) -m pipeline.codedeps > $@

# Reading params.toml needs only the standard library (pipeline/params.py imports nothing else).
PARAMS_CLI := $(PYTHON) -m pipeline.params
# EPOCHS=, BATCH_SIZE= and LR= set the selected model's section; for an ensemble, its members'.
TRAIN_SECTION := $(MODEL)
ifeq ($(MODEL)$(if $(EPOCHS)$(BATCH_SIZE)$(LR),+),ensemble+)
TRAIN_SECTION := $(shell $(PARAMS_CLI) --get ensemble.model $(PARAMS) 2>/dev/null)
endif
ifeq ($(MODEL)$(if $(EPOCHS)$(BATCH_SIZE)$(LR)$(FULL_DATA),+),blend+)
$(error MODEL=blend takes PARAMS= (blend.models, and each model's train.<model>.* keys), not EPOCHS=, BATCH_SIZE=, LR= or FULL_DATA=)
endif
OVERRIDES := $(PRESET_OVERRIDES) $(PARAMS) \
	$(if $(EPOCHS),train.$(TRAIN_SECTION).epochs=$(EPOCHS)) \
	$(if $(BATCH_SIZE),train.$(TRAIN_SECTION).batch_size=$(BATCH_SIZE)) \
	$(if $(LR),train.$(TRAIN_SECTION).learning_rate=$(LR)) \
	$(if $(SEED),train.seed=$(SEED)) \
	$(if $(MEMBERS),ensemble.members=$(MEMBERS)) \
	$(if $(FOLDS),cv.folds=$(FOLDS)) \
	$(if $(TRIALS),search.trials=$(TRIALS)) \
	$(if $(FULL_DATA),train.full_data=true)

# Bad parameters are refused before any stage runs.
ifneq ($(filter-out install help clean test test-fast kaggle-image lint format tensorboard submissions,$(or $(MAKECMDGOALS),install)),)
PARAMS_ERROR := $(shell $(PARAMS_CLI) $(OVERRIDES) 2>&1 >/dev/null)
$(if $(PARAMS_ERROR),$(error $(PARAMS_ERROR)))
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

submission: $(SUBMISSION) ## Predict test.csv and write the checked submission CSV (CV=1: the k-fold models' mean)

submissions: | $(VENV_OK) ## List your past Kaggle submissions with their scores
	$(PY) -m pipeline.kaggle.submissions

ifeq ($(KERNEL),)
submit: $(SUBMISSION) ## Everything out of date, then upload to Kaggle (or say why not); KERNEL=1: the notebook's
	@STAGE_DEPS='FORCE $(SUBMISSION)' $(PY) -m pipeline.stage $(basename $(SUBMISSION)).upload.json \
		-m pipeline.kaggle.submit --model $(MODEL) $(if $(CV),--cv)
endif

# The data stage runs when its code or the DATA= file changes, with FORCE=1, or when
# pipeline/datasource.py calls the data in place stale (none yet, another DATA=, or the demo
# sample while the competition's files can now be had). Nothing is recorded before it succeeds.
DATA_STALE := $(shell $(SHELL_ENV) $(PYTHON) -m pipeline.datasource $(if $(DATA),--data '$(DATA)'))
$(RAW)/source.json: $(CODE.pipeline.dataset) $(filter-out kaggle,$(wildcard $(DATA))) $(if $(FORCE)$(DATA_STALE),FORCE) | $(VENV_OK)
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
N_MEMBERS := $(shell $(PARAMS_CLI) --get ensemble.members $(OVERRIDES))
MEMBER_METRICS := $(foreach i,$(shell seq 1 $(N_MEMBERS)),$(MODELS)/ensemble/member-$(i)/metrics.json)

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

# One pytest-xdist worker per core; a test file stays on one worker (its fixtures are built once), and the
# files start in tests/conftest.py's order, the longest first (xdist would put the files with fewest tests last).
TEST_WORKERS ?= $(shell nproc)
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(VENV_OK) ## The whole suite, what CI runs, on every core (TEST_WORKERS=, PYTEST_ARGS= to pass options)
	@env=$$($(KAGGLE_IMAGE_BUILD)) && echo "KAGGLE_IMAGE_ENV=$$env $(PYTEST) $(PYTEST_ARGS)" && \
		KAGGLE_IMAGE_ENV=$$env $(PYTEST) $(PYTEST_ARGS)

test-fast: $(VENV_OK) ## The fast tier (~2 min): all but the tests that train for long or run Make end to end
	$(PYTEST) -m 'not slow' $(PYTEST_ARGS)

##@ Housekeeping
.PHONY: help clean FORCE

# The sections in the order a user meets them: the Makefile's, the included ones (mk/), then Quality
# and Housekeeping last.
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {last = ($$0 ~ /Quality|Housekeeping/); line = "\n" substr($$0, 5)} \
		/^[a-z-]+:.*## / {line = sprintf("  %-14s %s", $$1, $$2)} \
		line != "" {if (last) tail = tail line "\n"; else print line; line = ""} END {printf "%s", tail}' \
		$(filter-out %code.mk,$(MAKEFILE_LIST))

clean: ## Remove generated data, models, reports, submissions and benchmarks (keeps .venv)
	rm -rf $(STATE) $(RAW) $(PROCESSED) $(DOWNLOAD) $(MODELS) $(REPORTS) $(LOGS) $(BENCH) $(KERNEL_DIR) \
		$(SUBMISSIONS)/*.csv $(SUBMISSIONS)/*.json

FORCE:
