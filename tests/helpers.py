"""Builders for small competition-layout files, and a runner for the pipeline's CLIs."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# Importing TensorFlow in the test process sets TF_CPP_MIN_LOG_LEVEL=1 in its environment, which every
# command a test runs would then inherit, overriding the pipeline's own quiet default: commands get the
# value the suite started with (conftest.py imports this module before anything imports TensorFlow).
_STARTED_WITH = {name: os.environ.get(name) for name in ("TF_CPP_MIN_LOG_LEVEL",)}
PIXELS = [f"pixel{i}" for i in range(784)]
TRAIN_HEADER = ["label", *PIXELS]


def digits_table(rows: int, labelled: bool = True, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(rows, 784))
    table = [[str(v) for v in row] for row in pixels]
    if labelled:
        table = [[str(i % 10), *row] for i, row in enumerate(table)]
    return table


def csv_text(header: list[str], table: list[list[str]], sep: str = ",", eol: str = "\n") -> str:
    return "".join(sep.join(r) + eol for r in [header, *table])


def competition_files(n_train: int = 30, n_test: int = 12, train_text: str | None = None) -> dict[str, str]:
    return {
        "train.csv": train_text if train_text is not None else csv_text(TRAIN_HEADER, digits_table(n_train)),
        "test.csv": csv_text(PIXELS, digits_table(n_test, labelled=False, seed=1)),
        "sample_submission.csv": csv_text(["ImageId", "Label"], [[str(i), "0"] for i in range(1, n_test + 1)]),
    }


def sample_zip(train_rows: int, test_rows: int) -> bytes:
    """The committed sample cut to its first rows, in the competition's layout: for tests whose point
    does not depend on the data's size (a kill, a mount, a switch of source), where 5,000 rows only cost time."""
    import io

    keep = {"train.csv": train_rows, "test.csv": test_rows, "sample_submission.csv": test_rows}
    buf = io.BytesIO()
    with zipfile.ZipFile(REPO / "data/sample/digit-recognizer-sample.zip") as src:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dest:
            for name, rows in keep.items():
                lines = src.read(name).splitlines(keepends=True)
                dest.writestr(name, b"".join(lines[: rows + 1]))
    return buf.getvalue()


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def record(manifest: Path, *names: str) -> Path:
    """Add the files `names` (beside `manifest`) to its "outputs", as the stage that writes them
    would: readers refuse a file no manifest records."""
    import json

    from pipeline import files

    manifest = Path(manifest)
    data = json.loads(manifest.read_text()) if manifest.exists() else {}
    data["outputs"] = data.get("outputs", {}) | files.outputs(manifest.parent, names)
    manifest.write_text(json.dumps(data))
    return manifest


def copy_project(dest: Path) -> Path:
    """A throwaway copy of the project (code, params, Makefile, sample), sharing this venv."""
    for name in ("pipeline", "tests", "mk"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "params.toml", "pyproject.toml"):
        shutil.copy2(REPO / name, dest / name)
    (dest / "data" / "sample").mkdir(parents=True)
    shutil.copy2(REPO / "data/sample/digit-recognizer-sample.zip", dest / "data/sample")
    (dest / "submissions").mkdir()
    return dest


def venv_dir() -> Path:
    """The virtual environment running these tests, for `make VENV=...` in a copy."""
    return Path(sys.prefix)


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k not in _STARTED_WITH}
    full_env |= {k: v for k, v in _STARTED_WITH.items() if v is not None}
    # The checkout's code for commands run elsewhere (a project copy's own comes first: it is the cwd).
    full_env |= {"HOME": str(cwd / "home"), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)} | (env or {})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_make(root: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`make ARGS` in the project copy `root`, with this venv."""
    return run(["make", f"VENV={venv_dir()}", *args], cwd=root, env=env, timeout=timeout)


def make(root: Path, *args: str, env: dict | None = None) -> str:
    """`make ARGS` that must succeed; its stdout."""
    proc = run_make(root, *args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_module(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    return run([sys.executable, "-m", module, *args], cwd=cwd, env=env, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a failing stage must print, checked to be alone and clean."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]
