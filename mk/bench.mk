##@ Speed
# `make bench` (pipeline/speed/bench.py): a plain Keras notebook of the study's model first
# (pipeline/speed/baseline_notebook.py, standalone), then each of BENCH_MODELS (default: every model of
# pipeline/modeling/models.py) through make train's own CLIs, all in this one invocation; times as
# ratios of the baseline's. EPOCHS= caps every run
# (the baseline's too: a smoke run), PARAMS= goes to the pipeline runs. The other shorthands
# would mean something else here than in `make train`, so they are refused, not dropped.
BENCH_MODELS ?= $(MODEL_NAMES)
BENCH_BACKENDS ?=
bench_comma := ,
bench_space := $() $()
BENCH_REFUSED := $(strip $(foreach v,BATCH_SIZE LR SEED MEMBERS FULL_DATA FOLDS CV BENCH_EPOCHS,$(if $($(v)),$(v)=)) \
	$(if $(filter-out file default undefined,$(origin MODEL)),MODEL=))
.PHONY: bench

ifeq ($(BENCH_REFUSED),)
bench: $(PROCESSED)/features.json | $(VENV_OK) ## Time BENCH_MODELS (BENCH_BACKENDS=) against a plain Keras notebook; EPOCHS=, PARAMS=
	$(PY) -m pipeline.speed.bench --models $(subst $(bench_space),$(bench_comma),$(strip $(BENCH_MODELS))) \
		$(if $(strip $(BENCH_BACKENDS)),--backends $(subst $(bench_space),$(bench_comma),$(strip $(BENCH_BACKENDS)))) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) -- $(PARAMS)
else
bench:
	@echo 'error: make bench does not take $(BENCH_REFUSED): use EPOCHS= (caps every run), PARAMS="train.<model>.<key>=..." (the pipeline runs), BENCH_MODELS=, BENCH_BACKENDS=' >&2; exit 2
endif

# `make frontier` (pipeline/speed/frontier.py): every CV run's OOF accuracy against its CPU minutes, and the
# GFLOP/s its training achieved (FLOPs counted by XLA) against this machine's peak.
.PHONY: frontier
frontier: | $(VENV_OK) ## OOF accuracy per CPU minute and achieved GFLOP/s of every CV run (reports/frontier.{md,png})
	$(PY) -m pipeline.speed.frontier

# `make bench-layers` (pipeline/speed/layers.py): each convolution of a model timed alone (TensorFlow's
# oneDNN kernels, at its batch and precision) against the whole training step: what share of the step the
# convolutions are, and the rate each achieves against this machine's peak. PARAMS= as for make train.
BENCH_LAYERS_MODEL ?= cnn
.PHONY: bench-layers
bench-layers: | $(VENV_OK) ## Time each convolution of BENCH_LAYERS_MODEL (default cnn) against its whole step (bench/layers.md)
	$(PY) -m pipeline.speed.layers --model $(BENCH_LAYERS_MODEL) -- $(PARAMS)

# `make tune` (pipeline/speed/tune.py): the backend x precision timings behind each "auto" setting on this
# machine, from its cache outside the checkout; AGAIN=1 measures them anew (idle machine: they are timings).
AGAIN ?=
.PHONY: tune
tune: | $(VENV_OK) ## The measured backend/precision of each model here ("auto"); MODEL= for one, AGAIN=1 remeasures
	$(PY) -m pipeline.speed.tune $(if $(AGAIN),--again) \
		$(if $(filter command line,$(origin MODEL)),--models $(MODEL)) -- $(OVERRIDES)
