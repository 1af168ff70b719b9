"""Every path the pipeline reads or writes, derived from the package's own location."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PARAMS_FILE = ROOT / "params.toml"

DATA_DIR = ROOT / "data"
RAW_DIR = DATA_DIR / "raw"              # the competition's three CSVs + source.json + arrays.npz
PROCESSED_DIR = DATA_DIR / "processed"  # float32 (N, 28, 28) row sequences
DOWNLOAD_DIR = DATA_DIR / "download"    # the Kaggle API's zip, kept so a rerun downloads nothing
SAMPLE_ZIP = DATA_DIR / "sample" / "digit-recognizer-sample.zip"

MODELS_DIR = ROOT / "models"
SUBMISSIONS_DIR = ROOT / "submissions"
REPORTS_DIR = ROOT / "reports"
LOGS_DIR = ROOT / "logs"

COMPETITION = "digit-recognizer"
KAGGLE_NOTEBOOK_INPUT = Path("/kaggle/input") / COMPETITION

# The competition's files, in the order a competitor meets them.
RAW_FILES = ("train.csv", "test.csv", "sample_submission.csv")
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10


def model_dir(model: str) -> Path:
    return MODELS_DIR / model


def submission_path(model: str) -> Path:
    """The default model writes the file competitors expect; the others sit beside it."""
    name = "submission.csv" if model == "conv_gru" else f"submission-{model}.csv"
    return SUBMISSIONS_DIR / name
