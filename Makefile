# Kaggle Digit Recognizer: `make submit` runs every stage that is out of date, then uploads.
# Targets are the files each stage writes; the phony targets are thin aliases for them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := install
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
# JAX trains the seed model ~2x faster here than TensorFlow (README, "Speed"); EXTRAS=dev for TF alone.
EXTRAS ?= jax,dev
PY := $(VENV)/bin/python
# Reading params.toml while Make parses needs only the standard library (pipeline/params.py
# imports nothing else), so it works before .venv exists, as in a fresh clone.
PARAMS_CLI := $(PYTHON) -m pipeline.params
ifneq ($(shell $(PYTHON) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null),True)
$(error PYTHON=$(PYTHON) is missing or older than Python 3.11 (tomllib): pass PYTHON=python3.11 or newer)
endif
VENV_OK := $(VENV)/.installed

# What to run: MODEL=conv_gru|lstm|mlp|cnn|ensemble, DATA=<competition zip or folder>,
# FORCE=1 to fetch the data again, FULL_DATA=1 to train on every labelled row for the final
# upload, and parameter overrides (see params.toml).
MODEL ?= conv_gru
DATA ?=
FORCE ?=
EPOCHS ?=
BATCH_SIZE ?=
LR ?=
SEED ?=
PARAMS ?=
MEMBERS ?=
FULL_DATA ?=
# EPOCHS=, BATCH_SIZE= and LR= set the selected model's section; for an ensemble, its members'.
TRAIN_SECTION := $(MODEL)
ifeq ($(MODEL)$(if $(EPOCHS)$(BATCH_SIZE)$(LR),+),ensemble+)
TRAIN_SECTION := $(shell $(PARAMS_CLI) --get ensemble.model $(PARAMS) 2>/dev/null)
endif
OVERRIDES := $(PARAMS) \
	$(if $(EPOCHS),train.$(TRAIN_SECTION).epochs=$(EPOCHS)) \
	$(if $(BATCH_SIZE),train.$(TRAIN_SECTION).batch_size=$(BATCH_SIZE)) \
	$(if $(LR),train.$(TRAIN_SECTION).learning_rate=$(LR)) \
	$(if $(SEED),train.seed=$(SEED)) \
	$(if $(MEMBERS),ensemble.members=$(MEMBERS)) \
	$(if $(FULL_DATA),train.full_data=true)

# Bad parameters are refused before any stage runs.
ifneq ($(filter-out install help clean test tensorboard submissions,$(or $(MAKECMDGOALS),install)),)
PARAMS_ERROR := $(shell $(PARAMS_CLI) $(OVERRIDES) 2>&1 >/dev/null)
$(if $(PARAMS_ERROR),$(error $(PARAMS_ERROR)))
endif

RAW := data/raw
PROCESSED := data/processed
MODEL_DIR := models/$(MODEL)
SUBMISSION := submissions/$(if $(filter conv_gru,$(MODEL)),submission,submission-$(MODEL)).csv
MODEL_CODE := $(addprefix pipeline/modeling/,train.py models.py augment.py backend.py)

# The data stage reruns when a DATA= different from the last one is given (recorded in
# .make/data-request), or with FORCE=1; without DATA= the data already in place is kept.
$(shell mkdir -p .make; [ -z '$(DATA)' ] && touch -a .make/data-request || { [ "$$(cat .make/data-request 2>/dev/null)" = '$(DATA)' ] || printf '%s' '$(DATA)' > .make/data-request; })

##@ Main
.PHONY: install data features train submission submit submissions

install: $(VENV_OK) ## Create .venv from pyproject.toml (redone only when it changes)

data: $(RAW)/source.json ## Place and validate train/test CSVs in data/raw (DATA=zip|folder, FORCE=1)

features: $(PROCESSED)/train.npz ## Cache the images as float32 28x28 row sequences

train: $(MODEL_DIR)/metrics.json ## Train MODEL (default conv_gru); EPOCHS=, BATCH_SIZE=, LR=, SEED=, PARAMS=

submission: $(SUBMISSION) ## Predict test.csv and write the checked submission CSV

submit: $(SUBMISSION) ## Everything out of date, then upload to Kaggle (or say why not)
	$(PY) -m pipeline.submit --model $(MODEL)

submissions: | $(VENV_OK) ## List your past Kaggle submissions with their scores
	$(PY) -m pipeline.history

$(VENV_OK): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

DATA_USED := $(or $(DATA),$(file < .make/data-request))
$(RAW)/source.json: .make/data-request $(wildcard $(DATA_USED)) pipeline/dataset.py pipeline/csvcheck.py | $(VENV_OK)
	$(PY) -m pipeline.dataset $(if $(DATA_USED),--data '$(DATA_USED)') $(if $(FORCE),--force)

ifneq ($(FORCE),)
$(RAW)/source.json: FORCE
endif

$(PROCESSED)/train.npz $(PROCESSED)/test.npz &: $(RAW)/source.json pipeline/features.py
	$(PY) -m pipeline.features

# Rewritten only when the parameters a model reads change, so only then does it retrain.
models/%/params.json: FORCE | $(VENV_OK)
	@$(PY) -m pipeline.params --model $* --out $@ $(OVERRIDES)

models/%/metrics.json: models/%/params.json $(PROCESSED)/train.npz $(MODEL_CODE)
	$(PY) -m pipeline.modeling.train --model $*

# Ensemble members are separate targets: `make -j2 train MODEL=ensemble` trains two at a time,
# and a finished member is never retrained (adding members only trains the new ones).
ifeq ($(MODEL),ensemble)
N_MEMBERS := $(shell $(PARAMS_CLI) --get ensemble.members $(OVERRIDES))
MEMBER_METRICS := $(foreach i,$(shell seq 1 $(N_MEMBERS)),models/ensemble/member-$(i)/metrics.json)

models/ensemble/member-%/metrics.json: models/ensemble/params.json $(PROCESSED)/train.npz $(MODEL_CODE)
	$(PY) -m pipeline.modeling.ensemble member --index $*

models/ensemble/metrics.json: models/ensemble/params.json $(MEMBER_METRICS) pipeline/modeling/ensemble.py
	$(PY) -m pipeline.modeling.ensemble assemble --members $(N_MEMBERS)
endif

.PRECIOUS: models/%/params.json models/%/metrics.json

$(SUBMISSION): $(MODEL_DIR)/metrics.json $(PROCESSED)/test.npz pipeline/csvcheck.py
	$(PY) -m pipeline.modeling.predict --model $(MODEL)

##@ Compare and report
STUDY_MODELS := mlp lstm conv_gru
.PHONY: compare report tensorboard

compare: $(foreach m,$(STUDY_MODELS),models/$(m)/metrics.json) ## Train the study's three models on one split; table in reports/compare.md
	$(PY) -m pipeline.compare $(STUDY_MODELS)

report: reports/$(MODEL)/index.html ## Curves, confusion matrix, worst errors and per-class scores for MODEL

reports/%/index.html: models/%/metrics.json pipeline/report.py
	$(PY) -m pipeline.report --model $*

tensorboard: | $(VENV_OK) ## Serve the training curves in logs/ (http://localhost:6006)
	$(PY) -m tensorboard.main --logdir logs

##@ Speed
BENCH_MODELS ?= conv_gru mlp lstm cnn
BENCH_BACKENDS ?=
comma := ,
space := $() $()
BENCH_EPOCHS ?=
.PHONY: bench

bench: $(PROCESSED)/train.npz | $(VENV_OK) ## Time training/prediction of BENCH_MODELS against a plain Keras baseline
	$(PY) -m pipeline.bench $(BENCH_MODELS) $(if $(BENCH_BACKENDS),--backends $(subst $(space),$(comma),$(strip $(BENCH_BACKENDS)))) \
		$(if $(BENCH_EPOCHS),--epochs $(BENCH_EPOCHS))

##@ Quality
.PHONY: test

test: $(VENV_OK) ## Run the test suite (PYTEST_ARGS= to pass options)
	$(PY) -m pytest $(PYTEST_ARGS)

##@ Housekeeping
.PHONY: help clean FORCE

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

clean: ## Remove generated data, models, reports and submissions (keeps .venv)
	rm -rf .make $(RAW) $(PROCESSED) data/download models reports/*/ reports/compare.* logs bench submissions/*.csv submissions/*.json

FORCE:
