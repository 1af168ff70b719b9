"""Run the pipeline in a private Kaggle notebook: push, wait, fetch; then upload its submission.

`make kernel` (python -m pipeline.kaggle.kernel run NAME=value ...) pushes ONE self-contained script,
pipeline/kaggle/notebook.py with the pipeline's code (pipeline/, mk/, Makefile, params.toml,
pyproject.toml) as a base64 tar.gz inside, which unpacks it and runs `make submission` with the same
settings (MODEL=, EPOCHS=, PARAMS=, CV=1, ...) in notebook mode: the competition's files attached as
input, the notebook's own packages (no internet, nothing installed), the accelerator asked for by
name (KERNEL_ACCELERATOR, default NvidiaTeslaT4: GPU T4 x2). It then waits (one line per poll,
every KERNEL_POLL seconds, at most KERNEL_TIMEOUT seconds) and fetches the output into
kernel/output, laid out like an output root (data/raw/source.json, data/processed/train.npz,
models/, submissions/, logs/) plus the notebook's log, so `make report OUT=kernel/output ...` reads
it and `make submit KERNEL=1` (python -m pipeline.kaggle.kernel submit) uploads the notebook's very file
through pipeline.kaggle.submit, rebuilding nothing.

    python -m pipeline.kaggle.kernel run MODEL=cnn EPOCHS=15   # push, wait, fetch
    python -m pipeline.kaggle.kernel wait                      # wait again for the last push, fetch
    python -m pipeline.kaggle.kernel submit                    # upload kernel/output's submission

Every failure is one line and exit status 2 (no credentials, a refused push, no GPU quota left, the
notebook ending in ERROR: with the end of its log, the wait timing out: with the command that
resumes it, an output without a submission).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import replace_dir, shown, write_json

SLUG = "digit-recognizer-pipeline"
TITLE = "Digit Recognizer Pipeline"  # slugifies to SLUG, as the client wants
SCRIPT = f"{SLUG}.py"
# The Make variables a notebook run takes from `make kernel`, in this order.
SETTINGS = ("MODEL", "CV", "EPOCHS", "BATCH_SIZE", "LR", "SEED", "MEMBERS", "FOLDS", "FULL_DATA", "PARAMS", "PRESET")
# What the script packs into its output: what `make report` and `make submit KERNEL=1` read. Left
# out (and deleted, to keep the output small): the raw CSVs, arrays.npz, test.npz, Make's state.
ARCHIVE = "pipeline-output.tar.gz"
RECORD = "pipeline-run.json"
KEEP = (
    "data/raw/source.json",
    "data/processed/features.json",
    "data/processed/train.npz",
    "models",
    "submissions",
    "reports",
    "logs",
)
OUTPUT_DIRS = ("data", "models", "submissions", "reports", "logs", "bench", "kernel", ".make")

DEFAULT_POLL_S = 30.0
MAX_POLL_S = 600.0
DEFAULT_TIMEOUT_S = 3 * 3600.0
# Consecutive failed status questions tolerated during a wait (a network blip in a 3-hour wait).
STATUS_RETRIES = 3
LOG_LINES = 3
WAITING = {"QUEUED", "RUNNING", "NEW_SCRIPT", "UNKNOWN"}
# Words of a status error that waiting will not cure (the others, a blip or a 5xx, are retried).
PERMANENT = ("quota", "denied", "credentials", "HTTP 401", "HTTP 403", "access token", "KAGGLE_TIMEOUT must")


def kernel_dir() -> Path:
    return config.KERNEL_DIR


def state_path() -> Path:
    return kernel_dir() / "kernel.json"


def output_dir() -> Path:
    return kernel_dir() / "output"


def failed_dir() -> Path:
    return kernel_dir() / "failed"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _say(message: str) -> None:
    print(f"kernel: {message}", flush=True)


# --------------------------------------------------------------------------- settings
def parse_settings(words: list[str]) -> dict[str, str]:
    """['MODEL=cnn', 'EPOCHS=3', 'CV='] -> {'MODEL': 'cnn', 'EPOCHS': '3'} (empty values dropped)."""
    found = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or name not in SETTINGS:
            raise PipelineError(
                f"{word!r} is not a notebook setting: use NAME=value with NAME one of {', '.join(SETTINGS)}"
            )
        if "\n" in value or "\r" in value:
            raise PipelineError(f"{name}= must be on one line")
        if value.strip():
            found[name] = value.strip()
    found.setdefault("MODEL", "conv_gru")
    return found


def is_cv(settings: dict) -> bool:
    return bool(settings.get("CV")) or settings.get("MODEL") == "blend"


def submission_name(settings: dict) -> str:
    """The file `make submission` writes for these settings (a name under submissions/)."""
    return config.submission_path(settings["MODEL"], cv=is_cv(settings)).name


def make_args(settings: dict) -> list[str]:
    return [f"{name}={settings[name]}" for name in SETTINGS if name in settings]


# --------------------------------------------------------------------------- what is pushed
def bundle_files(root: Path = config.ROOT) -> list[Path]:
    """The pipeline's code, relative to root: what the notebook needs to run `make submission`."""
    files = [Path(name) for name in ("Makefile", "params.toml", "pyproject.toml")]
    files += sorted(
        p.relative_to(root)
        for p in (root / "pipeline").rglob("*")
        if p.suffix in (".py", ".html", ".json") and "__pycache__" not in p.parts
    )
    files += sorted(p.relative_to(root) for p in (root / "mk").glob("*.mk"))
    missing = [str(f) for f in files if not (root / f).is_file()]
    if missing:
        raise PipelineError(f"cannot build the notebook's code bundle: {', '.join(missing)} missing in {root}")
    return files


def make_bundle(root: Path = config.ROOT) -> bytes:
    """A gzipped tar of bundle_files(root) (file modes and times kept; no owner names)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for rel in bundle_files(root):
            info = tar.gettarinfo(str(root / rel), arcname=rel.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(root / rel, "rb") as f:
                tar.addfile(info, f)
    return raw.getvalue()


def _git_commit() -> str | None:
    """The checkout's commit (with -dirty), recorded in the script: the notebook has no .git."""
    from pipeline import provenance

    return provenance.git_commit()


NOTEBOOK = Path(__file__).with_name("notebook.py")  # the notebook's program (a template that is valid Python)
SETTINGS_BLOCK = re.compile(r"^# settings:.*?^# end of settings$", re.S | re.M)
BUNDLE_LINE = re.compile(r'^BUNDLE = "".*$', re.M)


def render_script(settings: dict, bundle: bytes, commit: str | None = None, accelerator: str = "none") -> str:
    """The one file pushed: pipeline/kaggle/notebook.py with its settings and the code bundle filled in."""
    encoded = base64.b64encode(bundle).decode("ascii")
    lines = "\n".join(encoded[i : i + 100] for i in range(0, len(encoded), 100))
    constants = {
        "SETTINGS": settings,
        "MAKE_ARGS": make_args(settings),
        "SUBMISSION": submission_name(settings),
        "BUNDLE_INFO": {
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "bytes": len(bundle),
            "git_commit": commit,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "ACCELERATOR": accelerator,
        "KEEP": list(KEEP),
        "OUTPUT_DIRS": list(OUTPUT_DIRS),
        "ARCHIVE": ARCHIVE,
        "RECORD": RECORD,
    }
    block = "\n".join(
        [
            f"# settings: written by `make kernel` for `make submission {' '.join(make_args(settings))}`",
            *(f"{name} = {value!r}" for name, value in constants.items()),
            "# end of settings",
        ]
    )
    template = NOTEBOOK.read_text(encoding="utf-8")
    script = SETTINGS_BLOCK.sub(lambda _: block, template, count=1)
    return BUNDLE_LINE.sub(lambda _: f'BUNDLE = """\n{lines}\n"""', script, count=1)


# What `machine_shape` asks for (kernel-metadata.json; kaggle 2.2.5 sends it on push). Without it,
# `enable_gpu` alone gets a P100 (Kaggle/kaggle-cli#821). Names from Kaggle's docs (kaggle-cli PR #1198):
# NvidiaTeslaT4 is "GPU T4 x2", Kaggle's default GPU; NvidiaL4, TpuV5E8 and others are passed through.
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"
NO_ACCELERATOR = "none"
P100 = "nvidiateslap100"
P100_REASON = (
    "Kaggle's current image is built for CUDA 12.8, which has no kernels for the P100's Pascal GPU "
    "(sm_60): PyTorch fails on its first CUDA op there (Kaggle/kaggle-cli PR #1156), and whether "
    "TensorFlow 2.20 and JAX 0.7 run on it is unconfirmed; kaggle 2.2.5 also calls it retired"
)


def accelerator() -> str:
    """KERNEL_ACCELERATOR (default NvidiaTeslaT4; `none` for a CPU notebook), refusing a P100 unless
    KERNEL_ALLOW_P100=1 asks for it explicitly."""
    if os.environ.get("KERNEL_GPU", "").strip():
        raise PipelineError(
            "KERNEL_GPU is gone: use KERNEL_ACCELERATOR=none for a notebook without a GPU "
            f"(default {DEFAULT_ACCELERATOR}, GPU T4 x2)"
        )
    name = os.environ.get("KERNEL_ACCELERATOR", "").strip() or DEFAULT_ACCELERATOR
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise PipelineError(
            f"KERNEL_ACCELERATOR={name!r} is not an accelerator name (e.g. {DEFAULT_ACCELERATOR}, "
            f"NvidiaL4, TpuV5E8, or {NO_ACCELERATOR})"
        )
    if name.lower() == NO_ACCELERATOR:
        return NO_ACCELERATOR
    if name.lower() == P100 and os.environ.get("KERNEL_ALLOW_P100", "").strip() not in ("1", "true", "yes"):
        raise PipelineError(
            f"KERNEL_ACCELERATOR={name} refused: {P100_REASON}. Use the default "
            f"{DEFAULT_ACCELERATOR} (GPU T4 x2), or set KERNEL_ALLOW_P100=1 to ask for it anyway"
        )
    return name


def metadata(user: str, accelerator: str = DEFAULT_ACCELERATOR) -> dict:
    """kernel-metadata.json: a private script, the competition attached, the accelerator by name, no internet."""
    shape = {} if accelerator == NO_ACCELERATOR else {"machine_shape": accelerator}
    return {
        "id": f"{user}/{SLUG}",
        "title": TITLE,
        "code_file": SCRIPT,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": accelerator.lower().startswith("nvidia"),
        "enable_tpu": accelerator.lower().startswith("tpu"),
        **shape,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [config.COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
        "keywords": [],
    }


def write_push_folder(folder: Path, user: str, settings: dict, accelerator: str = DEFAULT_ACCELERATOR) -> Path:
    """kernel/push/: kernel-metadata.json and the script, as `kaggle kernels push` reads them."""
    script = render_script(settings, make_bundle(), _git_commit(), accelerator)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "kernel-metadata.json").write_text(
        json.dumps(metadata(user, accelerator), indent=2) + "\n", encoding="utf-8"
    )
    (folder / SCRIPT).write_text(script, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- push, wait, fetch
# What the time estimate assumes of a T4 on this pipeline's small networks (mixed_float16, batch 128):
# 3 TFLOP/s sustained, ~5% of its 65 TFLOP/s float16 tensor-core peak (small convolutions and
# per-step overheads keep a GPU far from peak). An assumption, until a notebook run measures it.
T4_TFLOPS = 3.0
# ... and no step faster than 4 ms: a small model's step is launches and synchronisation, not FLOPs.
T4_STEP_S = 0.004
COMPETITION_TRAIN_ROWS = 42_000


def trainings(settings: dict, overrides: list[str]) -> list[dict]:
    """What `make submission` with these settings trains: per model, its fold models, epochs,
    training rows and FLOPs per image (counted: pipeline/speed/flops.py)."""
    from pipeline import params as params_mod
    from pipeline.speed import flops

    params = params_mod.resolve(overrides)
    cv = is_cv(settings)
    names = params["blend"]["models"] if settings["MODEL"] == "blend" else [settings["MODEL"]]
    found = []
    for name in names:
        members = params["ensemble"]["members"] if name == "ensemble" else 1
        p = params_mod.for_model(params, params["ensemble"]["model"] if name == "ensemble" else name)
        folds = params["cv"]["folds"] * params["cv"]["repeats"] if cv else 1  # fold models: folds x repeats
        share = (folds - 1) / folds if cv else (1.0 if p["full_data"] else 1 - p["data"]["val_fraction"])
        per_image = flops.per_image(p["model"], json.dumps(params_mod.architecture(p), sort_keys=True))
        found.append(
            {
                "name": name,
                "models": folds * members,
                "epochs": p["epochs"],
                "batch": p["batch_size"],
                "rows": round(COMPETITION_TRAIN_ROWS * share),
                "per_image": per_image,
            }
        )
    return found


def expected_time(settings: dict, overrides: list[str], shape: str) -> str:
    """The line printed before a push: the last measured run of these settings, or an estimate
    with its arithmetic."""
    try:
        last = json.loads((output_dir() / RECORD).read_text(encoding="utf-8"))
        if last.get("settings") == settings and last.get("accelerator") == shape and last.get("returncode") == 0:
            return (
                f"expected time: {_duration(last['seconds'])}, as measured by the last run of these settings "
                f"on {last['gpu']}"
            )
    except (OSError, ValueError, KeyError):
        pass
    parts, seconds = [], 0.0
    for r in trainings(settings, overrides):
        flop = r["models"] * r["epochs"] * r["rows"] * r["per_image"]
        steps = r["models"] * r["epochs"] * -(-r["rows"] // r["batch"])
        by_flops, by_steps = flop / (2 * T4_TFLOPS * 1e12), steps * T4_STEP_S
        seconds += max(by_flops, by_steps)
        parts.append(
            f"{r['name']}: {r['models']} model(s) x {r['epochs']} epochs x {r['rows']:,} rows x "
            f"{r['per_image'] / 1e6:.1f} MFLOP = {flop / 1e12:,.0f} TFLOP -> {by_flops / 60:.0f} min, "
            f"or {steps:,} steps x {T4_STEP_S * 1000:.0f} ms -> {by_steps / 60:.0f} min"
        )
    return (
        f"expected time on T4 x2: ~{_duration(seconds)} of training, an estimate (no GPU run of these settings "
        f"was measured): {'; '.join(parts)}; the longer of each, at an assumed {T4_TFLOPS:g} TFLOP/s per T4 (~5% "
        f"of its 65 TFLOP/s float16 peak) x 2 T4s and {T4_STEP_S * 1000:.0f} ms per step at least; plus the data "
        "stage and prediction"
    )


def push(settings: dict, overrides: list[str] | None = None) -> dict:
    """Push the notebook; return the state recorded in kernel/kernel.json."""
    from pipeline.kaggle import client as kaggle_client

    if not kaggle_client.credentials_available():
        raise PipelineError(kaggle_client.missing_credentials_message())
    shape = accelerator()
    kaggle_client.seconds_setting("KERNEL_POLL", DEFAULT_POLL_S, MAX_POLL_S)  # refuse bad settings before pushing
    kaggle_client.seconds_setting("KERNEL_TIMEOUT", DEFAULT_TIMEOUT_S)
    if overrides is not None and shape.lower().startswith("nvidia"):
        _say(expected_time(settings, overrides, shape))
    user = kaggle_client.username()
    try:
        folder = write_push_folder(kernel_dir() / "push", user, settings, shape)
    except OSError as exc:
        raise PipelineError(f"cannot write {exc.filename or kernel_dir()}: {exc.strerror}") from None
    kernel = f"{user}/{SLUG}"
    size = (folder / SCRIPT).stat().st_size
    _say(
        f"pushing {shown(folder / SCRIPT)} ({size / 1024:.0f} KB: the pipeline's code, "
        f"`make submission {' '.join(make_args(settings))}`) to {kernel}: private, "
        f"{'no accelerator' if shape == NO_ACCELERATOR else shape}, internet off, "
        f"competition {config.COMPETITION} attached"
    )
    answer = kaggle_client.push_kernel(folder)
    state = {
        "id": kernel,
        "version": answer["version"],
        "url": answer["url"],
        "ref": answer["ref"],
        "pushed_at": time.time(),
        "settings": settings,
        "submission": submission_name(settings),
        "accelerator": shape,
    }
    kernel_dir().mkdir(parents=True, exist_ok=True)
    write_json(state_path(), state)
    version = f"version {answer['version']}" if answer["version"] else "a new version"
    _say(f"{version} saved and running: {answer['url'] or kernel}")
    return state


def read_state() -> dict:
    try:
        return json.loads(state_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(
            f"nothing to wait for: {shown(state_path())} is missing (no notebook was pushed "
            "from here): run `make kernel` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{shown(state_path())} is unreadable ({exc}): run `make kernel` again") from None


def versioned_id(state: dict) -> str:
    return f"{state['id']}/{state['version']}" if state.get("version") else state["id"]


def describe(state: dict) -> str:
    return f"the notebook {state['id']}" + (f" (version {state['version']})" if state.get("version") else "")


def log_text(path: Path | None) -> str:
    """The notebook's log as plain text: Kaggle keeps it as a JSON list of {stream_name, time, data}."""
    if path is None or not path.is_file():
        return ""
    raw = path.read_text(encoding="utf-8", errors="replace")
    try:
        events = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list):
        return raw
    return "".join(str(e.get("data", "")) for e in events if isinstance(e, dict))


def log_tail(text: str, n: int = LOG_LINES, width: int = 400) -> str:
    from pipeline.kaggle import client as kaggle_client

    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if not lines:
        return "its log is empty"
    tail = " | ".join(lines[-n:])
    if len(tail) > width:
        tail = "..." + tail[-width:]
    return f"its log ends: {kaggle_client.scrub(tail)}"


def _fetch(state: dict, target: Path, file_pattern: str | None = None) -> tuple[Path, Path | None]:
    """The session's output (files matching file_pattern) into a fresh staging folder beside target."""
    from pipeline.kaggle import client as kaggle_client

    kernel_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=kernel_dir()))
    try:
        kaggle_client.kernel_output(versioned_id(state), staging, file_pattern)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    raw_log = staging / f"{SLUG}.log"
    log = None
    if raw_log.is_file():
        log = staging / "notebook.log"
        log.write_text(log_text(raw_log), encoding="utf-8")
        raw_log.unlink()
    return staging, log


def _unpack(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without the extraction filters
                for member in tar.getmembers():
                    if (
                        member.name.startswith("/")
                        or ".." in Path(member.name).parts
                        or not (member.isfile() or member.isdir())
                    ):
                        raise tarfile.TarError(f"unsafe member {member.name}")
                tar.extractall(dest)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise PipelineError(f"the notebook's {ARCHIVE} is unreadable ({exc}): rerun `make kernel`") from None


def fetch(state: dict) -> Path:
    """COMPLETE: the output into kernel/output (replacing the last one); return the submission."""
    from pipeline import csvcheck

    target = output_dir()
    staging, log = _fetch(state, target)
    try:
        shown_log = shown(target / log.name) if log else "none"
        archive = staging / ARCHIVE
        if archive.is_file():
            _unpack(archive, staging)
            archive.unlink()
        submission = staging / "submissions" / state["submission"]
        if not submission.is_file():
            raise PipelineError(
                f"{describe(state)} finished but its output has no submission "
                f"(submissions/{state['submission']}); {log_tail(log_text(log))} (log: {shown_log})"
            )
        try:
            source = json.loads((staging / "data/raw/source.json").read_text(encoding="utf-8"))
            n_test = int(source["rows"]["test"])
        except (OSError, ValueError, KeyError, TypeError):
            n_test = None
        rows = len(csvcheck.read_submission(submission, n_expected=n_test))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)
    path = target / "submissions" / state["submission"]
    accuracy = ""
    try:
        prov = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if prov.get("val_accuracy") is not None:
            accuracy = f", val_acc {prov['val_accuracy']:.4%}"
    except (OSError, ValueError, TypeError):
        pass
    settings = state.get("settings") or {}
    _say(
        f"fetched the output into {shown(target)}: submissions/{path.name} ({rows:,} rows{accuracy}), "
        f"the notebook's log (notebook.log), its models and data"
    )
    report_args = " ".join(f"'{a}'" if " " in a else a for a in make_args(settings))
    _say(f"upload it: make submit KERNEL=1; its report: make report OUT={shown(target)} {report_args}")
    _say(f"the notebook ran on {ran_on(target)} (asked for {state.get('accelerator', DEFAULT_ACCELERATOR)})")
    return path


def ran_on(output: Path) -> str:
    """The GPU(s) the notebook's pipeline-run.json names, as nvidia-smi listed them there."""
    try:
        record = json.loads((output / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "an unknown machine (no pipeline-run.json)"
    return record.get("gpu") or "no GPU"


def fail(state: dict, status: str, failure: str | None, elapsed: float) -> None:
    """ERROR or cancelled: the log into kernel/failed, and one line saying why."""
    from pipeline.kaggle import client as kaggle_client

    if kaggle_client.is_gpu_quota_message(failure):
        raise PipelineError(kaggle_client.gpu_quota_message(failure))
    target = failed_dir()
    try:
        staging, log = _fetch(state, target, file_pattern=rf"^{re.escape(RECORD)}$")
    except PipelineError as exc:
        log, tail = None, f"its log could not be fetched ({exc})"
    else:
        replace_dir(staging, target)
        log = target / log.name if log else None
        tail = log_tail(log_text(log))
    ended = "was cancelled" if status.startswith("CANCEL") else "ended in ERROR"
    why = f": {kaggle_client.scrub(failure)}" if failure else ""
    where = f" (whole log: {shown(log)})" if log else ""
    raise PipelineError(
        f"{describe(state)} {ended} after {_duration(elapsed)}{why}; {tail}{where}; fix it and rerun `make kernel`"
    )


def wait(state: dict) -> Path:
    """Poll the session until it ends (one line per poll); fetch its output; return the submission."""
    from pipeline.kaggle import client as kaggle_client

    poll = kaggle_client.seconds_setting("KERNEL_POLL", DEFAULT_POLL_S, MAX_POLL_S)
    timeout = kaggle_client.seconds_setting("KERNEL_TIMEOUT", DEFAULT_TIMEOUT_S)
    kernel = versioned_id(state)
    start = time.monotonic()
    pushed_at = float(state.get("pushed_at") or time.time())
    failures = 0
    status = "UNKNOWN"
    try:
        while True:
            try:
                answer = kaggle_client.kernel_status(kernel)
                failures = 0
            except PipelineError as exc:
                # A refusal that will not change (quota, access) ends the wait; a blip does not.
                if failures >= STATUS_RETRIES or any(word in str(exc) for word in PERMANENT):
                    raise
                failures += 1
                answer = {"status": "UNKNOWN", "failure_message": None}
                _say(f"status unknown ({exc}), {_duration(time.time() - pushed_at)} since the push")
            else:
                status = answer["status"]
                _say(f"{status}, {_duration(time.time() - pushed_at)} since the push")
            if answer["status"] == "COMPLETE":
                return fetch(state)
            if answer["status"] not in WAITING:
                fail(state, answer["status"], answer["failure_message"], time.time() - pushed_at)
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise PipelineError(
                    f"{describe(state)} is still {status} after {_duration(time.time() - pushed_at)} "
                    f"(KERNEL_TIMEOUT={timeout:g} s); it goes on running on Kaggle: resume waiting with "
                    "`make kernel-wait` (or `python -m pipeline.kaggle.kernel wait`), "
                    f"or see {state.get('url') or 'https://www.kaggle.com/code'}"
                )
            time.sleep(min(poll, left))
    except KeyboardInterrupt:
        print("the notebook goes on running on Kaggle: `make kernel-wait` resumes waiting for it", file=sys.stderr)
        raise


# --------------------------------------------------------------------------- upload
def submit() -> int:
    """Upload kernel/output's submission through pipeline.kaggle.submit (its checks, its receipt), as is."""
    out = output_dir()
    try:
        record = json.loads((out / RECORD).read_text(encoding="utf-8"))
        settings = record["settings"]
        settings["MODEL"]
    except FileNotFoundError:
        raise PipelineError(
            f"no notebook output in {shown(out)}: run `make kernel` (or `make kernel-wait`) first"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{shown(out / RECORD)} is unreadable ({exc}): run `make kernel` again") from None
    args = ["--model", settings["MODEL"]] + (["--cv"] if is_cv(settings) else [])
    env = {**os.environ, "PIPELINE_OUT": str(out.resolve())}
    env.pop("KAGGLE_KERNEL_RUN_TYPE", None)
    _say(
        f"uploading {shown(out / 'submissions' / submission_name(settings))}, the notebook's own "
        f"(`make submission {' '.join(make_args(settings))}`)"
    )
    return subprocess.call([sys.executable, "-m", "pipeline.kaggle.submit", *args], cwd=config.ROOT, env=env)


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="push the notebook, wait for it, fetch its output")
    run.add_argument("settings", nargs="*", metavar="NAME=value", help=f"one of {', '.join(SETTINGS)}")
    push_only = sub.add_parser("push", help="push the notebook and return (then: wait)")
    push_only.add_argument("settings", nargs="*", metavar="NAME=value")
    for parser in (run, push_only):
        parser.add_argument(
            "--overrides",
            nargs="*",
            default=None,
            metavar="KEY=VALUE",
            help="the parameter overrides these settings resolve to (for the time estimate)",
        )
    sub.add_parser("wait", help="wait for the last pushed notebook, fetch its output")
    sub.add_parser("submit", help="upload the fetched notebook's submission")
    args = ap.parse_args(argv)
    if args.command in ("run", "push"):
        state = push(parse_settings(args.settings), args.overrides)
        if args.command == "run":
            wait(state)
    elif args.command == "wait":
        wait(read_state())
    else:
        code = submit()
        if code:
            raise SystemExit(code)


if __name__ == "__main__":
    main()
