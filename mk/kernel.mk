# Kaggle notebooks (pipeline/kaggle/kernel.py): run `make submission` in a private Kaggle notebook with a
# GPU, fetch its output into kernel/output, upload that very submission with `make submit KERNEL=1`.
# KERNEL_POLL= (seconds between status checks, default 30), KERNEL_TIMEOUT= (seconds to wait,
# default 10800), KERNEL_ACCELERATOR= (default NvidiaTeslaT4, GPU T4 x2; `none` for a CPU notebook; a P100
# only with KERNEL_ALLOW_P100=1) reach pipeline/kaggle/kernel.py through the environment.

##@ Kaggle notebooks
.PHONY: kernel kernel-wait submit-kernel

# The settings the notebook's `make submission` gets: the ones given here, by the same names.
KERNEL_SETTINGS := MODEL CV EPOCHS BATCH_SIZE LR SEED MEMBERS FOLDS FULL_DATA PARAMS PRESET
KERNEL_ARGS = $(foreach v,$(KERNEL_SETTINGS),$(if $(strip $($(v))),'$(v)=$(strip $($(v)))'))

kernel: | $(VENV_OK) ## `make submission` (same MODEL=, PRESET=, CV=1...) in a private Kaggle notebook on T4 x2 (KERNEL_ACCELERATOR=)
	$(PY) -m pipeline.kaggle.kernel run $(KERNEL_ARGS) --overrides $(OVERRIDES)

kernel-wait: | $(VENV_OK) ## Wait again for the notebook `make kernel` pushed, then fetch its output
	$(PY) -m pipeline.kaggle.kernel wait

submit-kernel: | $(VENV_OK) ## Upload kernel/output's submission as it is (`make submit KERNEL=1`)
	$(PY) -m pipeline.kaggle.kernel submit

# `make submit KERNEL=1`: the main Makefile's submit has no recipe then; this is it. Only a KERNEL
# given on the command line (or in the environment) counts: pipeline.config may also name a path so.
ifneq ($(filter command line environment,$(origin KERNEL)),)
ifneq ($(strip $(KERNEL)),)
submit: submit-kernel
endif
endif
