"""The Kaggle notebook's program: what `make kernel` pushes, with its settings and the pipeline's code.

This file is a template that is also valid Python: pipeline/kaggle/kernel.py fills in the block
between `# settings:` and `# end of settings` and the BUNDLE (a base64 tar.gz of pipeline/, mk/,
Makefile, params.toml, pyproject.toml), and pushes the result as one script. In the notebook it:
unpacks the code; runs `make submission` with the pushed settings in notebook mode (the
notebook's own interpreter and packages, the competition's files wherever Kaggle mounted them
under <kaggle root>/input, outputs in <kaggle root>/working; see pipeline/datasource.py); names the
GPU it got; packs what `make report` and `make submit KERNEL=1` read into pipeline-output.tar.gz;
keeps submission.csv (what the notebook's Submit button takes) and pipeline-run.json; and
deletes the rest (raw CSVs, arrays) to keep the output small. Standard library only.
"""

import base64
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# settings: filled in by `make kernel`
SETTINGS = {"MODEL": "conv_gru"}
MAKE_ARGS = ["MODEL=conv_gru"]
SUBMISSION = "submission.csv"
BUNDLE_INFO = {}
ACCELERATOR = "NvidiaTeslaT4"
KEEP = []  # what to pack, and the output folders: pipeline/kaggle/kernel.py's
OUTPUT_DIRS = []
ARCHIVE = "pipeline-output.tar.gz"
RECORD = "pipeline-run.json"
# end of settings


def say(message):
    print(f"[pipeline] {message}", flush=True)


def gpus():
    """['GPU 0: Tesla T4 (UUID: ...)', ...] as nvidia-smi lists them; [] without a GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(" (UUID")[0] for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def unpack(dest):
    data = base64.b64decode("".join(BUNDLE.split()))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)


def run_make(cmd, cwd):
    """Run make, copying its output (stderr merged, in order) into this notebook's log."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    return proc.returncode


def pack(working):
    """What `make report` and `make submit KERNEL=1` need, times kept (so Make sees it up to date)."""
    kept = []
    with tarfile.open(working / ARCHIVE, "w:gz", compresslevel=6) as tar:
        for rel in KEEP:
            if (working / rel).exists():
                tar.add(
                    working / rel,
                    arcname=rel,
                    filter=lambda info: None if "__pycache__" in info.name.split("/") else info,
                )
                kept.append(rel)
    return kept


def main():
    started = time.time()
    root = Path(os.environ.get("KAGGLE_ROOT") or "/kaggle")
    working = root / "working"
    working.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KAGGLE_KERNEL_RUN_TYPE", "Batch")  # notebook mode, also when run by hand
    found = gpus()
    record = {
        "settings": SETTINGS,
        "make_args": MAKE_ARGS,
        "bundle": BUNDLE_INFO,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "machine": platform.machine(),
        "accelerator": ACCELERATOR,
        "gpu": "; ".join(found) or None,
        "gpus": len(found),
        "returncode": None,
    }
    say(f"python {record['python']} ({sys.executable}); asked for {ACCELERATOR}, got: {record['gpu'] or 'no GPU'}")
    returncode = 2
    try:
        if shutil.which("make") is None:
            say("error: `make` is not installed in this notebook's image")
        else:
            src = Path(tempfile.mkdtemp(prefix="digit-recognizer-pipeline-"))
            unpack(src)
            cmd = ["make", "-C", str(src), "submission", *MAKE_ARGS, f"PYTHON={sys.executable}"]
            say("$ " + shlex.join(cmd))
            returncode = run_make(cmd, working)
    finally:
        submission = working / "submissions" / SUBMISSION
        if submission.is_file() and not (working / "submission.csv").exists():
            shutil.copyfile(submission, working / "submission.csv")  # what the Submit button takes
        record.update(
            returncode=returncode,
            seconds=round(time.time() - started, 1),
            submission=f"submissions/{SUBMISSION}" if submission.is_file() else None,
        )
        record["archive"] = pack(working)
        for name in OUTPUT_DIRS:
            shutil.rmtree(working / name, ignore_errors=True)
        (working / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        say(
            f"make exited {returncode} after {record['seconds']:.0f} s on {record['gpu'] or 'no GPU'}; output: "
            + ", ".join(sorted(p.name for p in working.iterdir()))
        )
    if returncode != 0:
        raise SystemExit(returncode)  # the notebook ends in ERROR


BUNDLE = ""  # bundle: filled in by `make kernel`

if __name__ == "__main__":
    main()
