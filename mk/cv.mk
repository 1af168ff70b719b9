##@ Cross-validation
# Included by the main Makefile (PY, VENV_OK, MODELS, REPORTS, PROCESSED, STATE, OVERRIDES, MODEL, CV,
# and, from pipeline/makevars.py, MODEL_NAMES, N_FOLDS, N_REPEATS, FOLD_NUMBERS, BLEND_MODELS, COMPARE_DEFAULT,
# CV_ONE_AT_A_TIME and CODE.<module> come from there). A CV run is models/<m>/cv/{metrics.json,oof.npz}.
.PHONY: blend compare

# --- cv: k fold models and their out-of-fold predictions (pipeline/modeling/cv.py)
# k-fold cross-validation of any model (pipeline/modeling/cv.py). Each fold is its own target: a
# finished fold is never retrained, a killed one resumes. Changing predict.tta re-predicts without
# retraining.
CV_MODELS := $(MODEL_NAMES) ensemble

.PHONY: cv

cv: $(MODELS)/$(MODEL)/cv/metrics.json ## k-fold CV of MODEL: OOF accuracy with its interval (FOLDS=, CV=1 for its submission, CV_JOBS=)

# Folds trained side by side (CV_JOBS=N sets it for every model). A JAX fold of the seed model keeps
# only 1.1-1.25 of this machine's 2 cores busy (its steps are too small to spread; the LSTM and the MLP
# 1.4-1.5 in make bench): two 40-epoch conv_gru folds side by side train in 162-170 s each, one alone in
# 119 s. The CNN's fold fills both cores (two side by side: 41 s an epoch each against ~20 s alone), and so
# do an ensemble's members: one at a time (CV_ONE_AT_A_TIME: pipeline/modeling/models.py's ONE_FOLD_AT_A_TIME
# and ensemble). With a GPU, one at a time too: each JAX process would claim most of its memory.
# One fold per core is measured here on 2 cores only (docs/speed.md).
CV_JOBS ?=
cv_jobs = $(or $(CV_JOBS),$(if $(wildcard /proc/driver/nvidia/gpus/*)$(filter $(CV_ONE_AT_A_TIME),$(1)),1,$(shell nproc)))
# A make run with -j already shares its job slots with the fold make; one without gets cv_jobs of them.
cv_jobs_flag = $(if $(filter-out -j1,$(filter -j%,$(MAKEFLAGS))),,-j$(call cv_jobs,$(1)))

define cv_rules
CV_FOLDS.$(1) := $(foreach k,$(FOLD_NUMBERS),$(MODELS)/$(1)/cv/fold-$(k)/metrics.json)

$(MODELS)/$(1)/cv/params.json: FORCE | $(VENV_OK)
	@$$(PY) -m pipeline.params --model $(1) --cv --out $$@ $$(OVERRIDES)

$(MODELS)/$(1)/cv/fold-%/metrics.json: $(MODELS)/$(1)/cv/params.json $(PROCESSED)/features.json $(CODE.pipeline.modeling.cv)
	$$(STAGE) -m pipeline.modeling.cv fold --model $(1) --fold $$*

# The folds, by a make of their own that runs $$(cv_jobs) at a time; this file lists their hashes and
# changes only when a fold does, so the assembly reruns only then.
.PHONY: cv-folds.$(1)
cv-folds.$(1): $$(CV_FOLDS.$(1))
	@:
$(MODELS)/$(1)/cv/folds.sha256: FORCE | $(VENV_OK)
	+@$$(MAKE) --no-print-directory $$(call cv_jobs_flag,$(1)) cv-folds.$(1)
	@sha256sum $$(CV_FOLDS.$(1)) > $$@.tmp && $$(MOVE_IF_CHANGED)

$(MODELS)/$(1)/cv/metrics.json: $(MODELS)/$(1)/cv/params.json $(MODELS)/$(1)/predict.json $(PROCESSED)/features.json \
		$(MODELS)/$(1)/cv/folds.sha256 $(CODE.pipeline.modeling.cv)
	@STAGE_DEPS='$$^ $$(CV_FOLDS.$(1))' $$(PY) -m pipeline.stage $$@ -m pipeline.modeling.cv assemble --model $(1) --folds $(N_FOLDS) --repeats $(N_REPEATS)
endef
$(foreach m,$(CV_MODELS),$(eval $(call cv_rules,$(m))))

.PRECIOUS: $(MODELS)/%/cv/params.json $(MODELS)/%/cv/metrics.json


# $(call WRITE_IF_CHANGED,text): write text to $@ only when it differs, so that a changed list of
# names (blend.models, COMPARE_MODELS) reruns what depends on it and an unchanged one does not.
define WRITE_IF_CHANGED
@mkdir -p $(@D) && printf '%s\n' '$(strip $(1))' > $@.tmp && $(MOVE_IF_CHANGED)
endef

# --- blend: weights fitted on the members' out-of-fold predictions (pipeline/modeling/blend.py)
# The study's models, the blend's and the blend (COMPARE_DEFAULT: pipeline/makevars.py).
COMPARE_MODELS ?= $(COMPARE_DEFAULT)

# The blend's rules only when a blend is wanted (BLEND_MODELS: blend.models, overrides applied).
ifneq ($(filter blend,$(MODEL) $(MAKECMDGOALS) $(COMPARE_MODELS)),)
$(STATE)/blend-models.txt: FORCE
	$(call WRITE_IF_CHANGED,$(BLEND_MODELS))

$(MODELS)/blend/cv/metrics.json: $(foreach m,$(BLEND_MODELS),$(MODELS)/$(m)/cv/metrics.json) \
		$(STATE)/blend-models.txt $(CODE.pipeline.modeling.blend) | $(VENV_OK)
	$(STAGE) -m pipeline.modeling.blend --models $(BLEND_MODELS)
endif

blend: $(MODELS)/blend/cv/metrics.json ## The CV runs of blend.models, weights fitted out of fold (MODEL=blend)

# --- compare: OOF accuracy, 95% interval, McNemar against the best (pipeline/evaluate/compare.py)
$(STATE)/compare-models.txt: FORCE
	$(call WRITE_IF_CHANGED,$(COMPARE_MODELS))

$(REPORTS)/compare.md: $(foreach m,$(COMPARE_MODELS),$(MODELS)/$(m)/cv/metrics.json) \
		$(STATE)/compare-models.txt $(CODE.pipeline.evaluate.compare) | $(VENV_OK)
	$(STAGE) -m pipeline.evaluate.compare $(COMPARE_MODELS)

compare: $(REPORTS)/compare.md ## CV runs side by side (COMPARE_MODELS=, default the study's models and the blend's): OOF accuracy, 95% CI, McNemar

# --- report CV=1: confusion matrix and errors out of fold, over every labelled row (pipeline/evaluate/report.py)
ifneq ($(CV),)
report: $(REPORTS)/$(MODEL)-cv/index.html
endif

$(REPORTS)/%-cv/index.html: $(MODELS)/%/cv/metrics.json $(PROCESSED)/features.json $(CODE.pipeline.evaluate.report) | $(VENV_OK)
	$(STAGE) -m pipeline.evaluate.report --model $* --cv
