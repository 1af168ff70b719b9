"""Every path the pipeline reads or writes, derived in one place.

Code and parameters live beside this package (ROOT). Outputs live under one output root, OUT:
the checkout itself by default, `PIPELINE_OUT` when set (Make's `OUT=`), and `<kaggle root>/working`
inside a Kaggle notebook, whose input folder is read-only. The Kaggle root is `/kaggle`, or
`KAGGLE_ROOT` when set (tests and dry runs point it at a temporary folder).

Standard library only: Make takes its paths from here while it parses, before .venv exists
(pipeline/makevars.py).
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.toml"
PYPROJECT = ROOT / "pyproject.toml"
SAMPLE_ZIP = ROOT / "data" / "sample" / "digit-recognizer-sample.zip"

COMPETITION = "digit-recognizer"
KAGGLE_ROOT = Path(os.environ.get("KAGGLE_ROOT") or "/kaggle")
# Kaggle sets KAGGLE_KERNEL_RUN_TYPE (Interactive or Batch) in every notebook session.
IN_NOTEBOOK = bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))
KAGGLE_INPUT = KAGGLE_ROOT / "input"  # read-only; where Kaggle mounts attached data (pipeline/datasource.py)
NOTEBOOK_WORKING = KAGGLE_ROOT / "working"
# What a notebook's Submit button takes.
NOTEBOOK_SUBMISSION = NOTEBOOK_WORKING / "submission.csv"

OUT = Path(os.environ.get("PIPELINE_OUT") or (NOTEBOOK_WORKING if IN_NOTEBOOK else ROOT)).resolve()

DATA_DIR = OUT / "data"
RAW_DIR = DATA_DIR / "raw"  # the competition's three CSVs + source.json + arrays.npz
PROCESSED_DIR = DATA_DIR / "processed"  # float32 (N, 28, 28) row sequences
DOWNLOAD_DIR = DATA_DIR / "download"  # the Kaggle API's zip, kept so a rerun downloads nothing
MODELS_DIR = OUT / "models"
SUBMISSIONS_DIR = OUT / "submissions"
REPORTS_DIR = OUT / "reports"
LOGS_DIR = OUT / "logs"
BENCH_DIR = OUT / "bench"
KERNEL_DIR = OUT / "kernel"  # what `make kernel` pushed and fetched back
STATE_DIR = OUT / ".make"  # Make's own state: locks, the lists of names it wrote, the XLA cache

# The competition's files, in the order a competitor meets them.
RAW_FILES = ("train.csv", "test.csv", "sample_submission.csv")
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10


def model_dir(model: str) -> Path:
    return MODELS_DIR / model


def cv_dir(model: str) -> Path:
    """A model's k-fold cross-validation run (its fold models, OOF predictions, test mean)."""
    return MODELS_DIR / model / "cv"


def submission_path(model: str, cv: bool = False) -> Path:
    """The default model writes the file competitors expect; the others sit beside it.
    A blend exists only cross-validated: submission-blend.csv."""
    if model == "blend":
        return SUBMISSIONS_DIR / "submission-blend.csv"
    if cv:
        return SUBMISSIONS_DIR / f"submission-{model}-cv.csv"
    name = "submission.csv" if model == "conv_gru" else f"submission-{model}.csv"
    return SUBMISSIONS_DIR / name
