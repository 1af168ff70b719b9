##@ Search
# Included by the main Makefile. An Optuna study of MODEL's settings on one CV fold
# (pipeline/modeling/search.py): a screen whose winner `make cv` then confirms on every fold.
.PHONY: search

SEARCH_MODELS := $(MODEL_NAMES)

define search_rules
$(MODELS)/$(1)/search/params.json: FORCE | $(VENV_OK)
	@$$(PY) -m pipeline.params --model $(1) --search --out $$@ $$(OVERRIDES)

# Reruns when the space, the trials wanted, the data or the code change; the study itself (study.db)
# keeps every finished trial, so a rerun trains only the trials it lacks.
$(MODELS)/$(1)/search/metrics.json: $(MODELS)/$(1)/search/params.json $(PROCESSED)/features.json $(CODE.pipeline.modeling.search)
	$$(STAGE) -m pipeline.modeling.search --model $(1)
endef
$(foreach m,$(SEARCH_MODELS),$(eval $(call search_rules,$(m))))

.PRECIOUS: $(MODELS)/%/search/params.json

search: $(MODELS)/$(MODEL)/search/metrics.json ## Optuna study of MODEL's settings on one CV fold (TRIALS=; [search] in params.toml)
