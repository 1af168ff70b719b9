"""Where an artifact came from: data hash, package versions, git commit."""

import platform
import subprocess
from functools import cache
from importlib import metadata

from pipeline import config
from pipeline.files import read_json

PACKAGES = ("keras", "tensorflow", "jax", "numpy", "pandas", "scikit-learn", "kaggle")


def data_sha256() -> str:
    """The hash of the train.csv the data stage validated (from data/raw/source.json)."""
    return read_json(config.RAW_DIR / "source.json")["sha256"]["train.csv"]


@cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(config.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(config.ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def collect() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "packages": versions, "git_commit": git_commit(),
            "machine": platform.machine()}
