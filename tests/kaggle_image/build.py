"""Build the stand-in for Kaggle's notebook image: a venv of exactly requirements.txt (beside this file).

`make test` and `make kaggle-image` run it with the Python that builds .venv (standard library only).
It takes Python 3.12, the image's, when --python names one; otherwise the Python running it, the same
pins on another Python, saying so in one line (they install on 3.11 too). The venv is kept outside the
checkout, named by the list's hash (and by the Python's version when it is not 3.12), so clones and CI
runs share it and a changed list builds a new one.

It prints the venv's folder on stdout and never fails for the image's sake: when the pins do not
install on the Python at hand, it writes the reason, one line, to <folder>/.missing, and the notebook
tests skip with that line while every other test runs. `make test` does not try again a build that
failed on this list and Python; `make kaggle-image` (--retry) does. KAGGLE_IMAGE_ENV, when set, names
a ready venv and nothing is built.
"""

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

LIST = Path(__file__).with_name("requirements.txt")
IMAGE_PYTHON = (3, 12)


def say(line: str) -> None:
    print(f"kaggle-image: {line}", file=sys.stderr, flush=True)


def version_of(python: str) -> tuple[str, str] | None:
    """(executable, "3.12.1") of a Python, or None if it does not run."""
    try:
        proc = subprocess.run(
            [python, "-c", "import sys, platform; print(sys.executable); print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.split()
    return (lines[0], lines[1]) if proc.returncode == 0 and len(lines) == 2 else None


def folder_for(version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = f"kaggle-image-{hashlib.sha256(LIST.read_bytes()).hexdigest()[:12]}"
    if tuple(int(v) for v in version.split(".")[:2]) != IMAGE_PYTHON:
        name += "-py" + ".".join(version.split(".")[:2])
    return cache / "digit-recognizer-pipeline" / name


def last_error(text: str) -> str:
    """The line of pip's (or venv's) output that says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    return (errors or lines or ["no output"])[-1][:300]


def build(folder: Path, python: str, version: str) -> str | None:
    """The venv of the pins at folder; None when built, else what is missing, in one line."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        ([python, "-m", "venv", str(folder)], f"`{python} -m venv` failed"),
        (
            [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]
            + [str(LIST)],
            f"the pins of {LIST.relative_to(LIST.parents[2])} do not install on Python {version}",
        ),
    ]
    for cmd, failed in steps:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            return f"{failed}: {last_error(proc.stdout)}"
    (folder / ".installed").write_text(version + "\n")
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default="", help="Python 3.12 for the venv (empty: the Python running this)")
    ap.add_argument("--retry", action="store_true", help="build again after a failed build")
    args = ap.parse_args(argv)
    if os.environ.get("KAGGLE_IMAGE_ENV"):
        print(os.environ["KAGGLE_IMAGE_ENV"])
        return
    found = version_of(args.python) if args.python else None
    if found is None:
        found = (sys.executable, ".".join(map(str, sys.version_info[:3])))
        if sys.version_info[:2] != IMAGE_PYTHON:
            say(
                f"no Python {'.'.join(map(str, IMAGE_PYTHON))} (the image's) found: the stand-in gets the image's "
                f"pins on Python {found[1]} ({found[0]}); pass KAGGLE_IMAGE_PYTHON=<python3.12> for the image's own"
            )
    python, version = found
    folder = folder_for(version)
    missing = folder / ".missing"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once: one builds, the other waits for it
        if (folder / ".installed").is_file() or (missing.is_file() and not args.retry):
            if missing.is_file() and not (folder / ".installed").is_file():
                say(f"{missing.read_text().strip()} (an earlier build; `make kaggle-image` tries again)")
            print(folder)
            return
        say(f"building {folder} (Python {version}, {LIST.name}; a few minutes, once)")
        reason = build(folder, python, version)
        if reason is not None:
            folder.mkdir(parents=True, exist_ok=True)
            missing.write_text(reason + "\n")
            say(f"{reason}: the notebook-image tests will skip")
    print(folder)


if __name__ == "__main__":
    main()
