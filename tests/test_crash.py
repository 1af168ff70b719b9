"""Kill it anywhere: every stage, SIGKILLed at a seeded point (at a write event or at a random
moment), then the plain command again, must end exactly where an uninterrupted run ends.

In the spirit of SQLite's crash tests: a reference run records each stage's write events
(PIPELINE_CRASH_LOG) and its duration; then, from the state before the stage, the stage's kill point
runs its make command and kills the stage's process, either at its n-th write event
(PIPELINE_CRASH_AT=n: before a temporary file is written, before its rename, after it, mid-swap
of a folder) or after t seconds (from outside, mid-computation or mid-write), and runs the same
command again. One point per stage, the two kinds in turn, drawn by a seeded generator: every stage
is killed once per run (CRASH_SEED=<n> draws other points). The rerun must succeed, leave no
temporary behind, and end with the reference's outputs: the same bytes for data, arrays and
submissions, the same weights for models, the same JSON but for timings, and exactly one upload.
"""

import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from fake_kaggle import FakeKaggle

from pipeline import config
from tests.helpers import copy_project, venv_dir

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CRASH_SEED", "17"))  # CRASH_SEED=<n>: other kill points
# The cheapest models that exercise every stage: the MLP, and an "ensemble" of one MLP as the blend's
# second member.
ONE_MLP = "ensemble.model=mlp ensemble.members=1"
BLEND = f"PARAMS=blend.models=mlp,ensemble cv.folds=2 train.mlp.epochs=2 {ONE_MLP}"
# (stage, the module whose process is killed, its plain make command); run in this order.
STEPS = [
    ("data", "pipeline.dataset", ["data"]),
    ("features", "pipeline.features", ["features"]),
    ("train", "pipeline.modeling.train", ["train", "MODEL=mlp", "EPOCHS=2"]),
    ("cv fold", "pipeline.modeling.cv", ["models/mlp/cv/fold-1/metrics.json", "MODEL=mlp", "FOLDS=2", "EPOCHS=2"]),
    ("cv", None, ["cv", "MODEL=mlp", "FOLDS=2", "EPOCHS=2"]),  # the blend's members: not killed
    ("cv ensemble", None, ["cv", "MODEL=ensemble", "FOLDS=2", "EPOCHS=2", f"PARAMS={ONE_MLP}"]),
    ("blend", "pipeline.modeling.blend", ["blend", BLEND]),
    ("submission", "pipeline.modeling.predict", ["submission", "MODEL=mlp", "EPOCHS=2"]),
    ("submit", "pipeline.kaggle.submit", ["submit", "MODEL=mlp", "EPOCHS=2"]),
]
OUTPUT_DIRS = ("data", "models", "submissions")
# JSON keys that record when and by which command, not what: timings, provenance, the run record.
VOLATILE = re.compile(r"seconds|provenance|date|since|^run$")


# ---------------------------------------------------------------- comparing outputs
def keras_weights(path: Path) -> dict:
    import h5py

    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
        found = {}
        h5.visititems(
            lambda name, obj: found.__setitem__(name, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
        )
        return found


def stable_json(value):
    """JSON without what differs between identical runs: timings, and the hashes of .keras files
    (a Keras archive records when it was saved; its weights are compared instead)."""
    if isinstance(value, dict):
        return {
            k: stable_json(v)
            for k, v in value.items()
            if not VOLATILE.search(k) and not k.endswith(".keras") and k != "predicted_by_sha256"
        }
    if isinstance(value, list):
        return [stable_json(v) for v in value]
    return value


def snapshot(root: Path, reference_root: Path | None = None) -> dict:
    """Every output file (hidden temporaries included) -> what must match. Paths inside JSON files
    name the project's folder (this one, or the reference's for files copied from it): both read <root>."""
    found = {}
    for d in OUTPUT_DIRS:
        for path in sorted((root / d).rglob("*")):
            rel = str(path.relative_to(root))
            if not path.is_file() or "/sample/" in f"/{rel}" or rel.endswith(".gitkeep"):
                continue
            if "/.work-" in rel:  # a finished run leaves none; a killed one's are resumed, then removed
                found[rel] = "work"
            elif path.suffix == ".keras":
                found[rel] = keras_weights(path)
            elif path.suffix == ".json":
                text = path.read_text().replace(str(root), "<root>")
                found[rel] = stable_json(
                    json.loads(text.replace(str(reference_root), "<root>") if reference_root else text)
                )
            else:
                found[rel] = path.read_bytes()
    return found


def differences(expected: dict, actual: dict) -> list[str]:
    diff = [f"missing {k}" for k in expected if k not in actual]
    diff += [f"unexpected {k}" for k in actual if k not in expected]
    diff += [f"differs {k}" for k in expected if k in actual and expected[k] != actual[k]]
    return diff


# ---------------------------------------------------------------- running and killing
def stage_pids(module: str, root: Path) -> list[int]:
    """Processes running `python -m pipeline.stage ... -m MODULE` in the project copy `root`: never
    another run's on the same machine (CI beside a user's long run, or two test sessions)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
                cwd = (entry / "cwd").resolve()
            except OSError:
                continue
            if b"pipeline.stage" in words and module.encode() in words and cwd == root.resolve():
                pids.append(int(entry.name))
    return pids


class Project:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env

    def make(self, args, extra=None, kill_after=None, module=None) -> subprocess.CompletedProcess:
        env = self.env | (extra or {})
        proc = subprocess.Popen(
            ["make", f"VENV={venv_dir()}", *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if kill_after is not None:
            deadline = time.monotonic() + kill_after
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            for pid in stage_pids(module, self.root):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: the project before each step, each step's events and duration, and
    the outputs after it."""
    base = tmp_path_factory.mktemp("crash")
    fake = FakeKaggle(
        key="fake-key-" + secrets.token_hex(16),
        token="fake-token-" + secrets.token_hex(16),
        zip_bytes=config.SAMPLE_ZIP.read_bytes(),
    ).start()
    root = copy_project(base / "reference")
    (base / "home" / ".kaggle").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")} | {
        "HOME": str(base / "home"),
        "KAGGLE_USERNAME": fake.username,
        "KAGGLE_KEY": fake.key,
        "KAGGLE_CONFIG_DIR": str(base / "home" / ".kaggle"),
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": fake.proxy_url,
        "http_proxy": fake.proxy_url,
        "NO_PROXY": "",
        "no_proxy": "",
        "KAGGLE_TIMEOUT": "30",
        "PYTHONUNBUFFERED": "1",
    }
    project = Project(root, env)
    steps = []
    for name, module, args in STEPS:
        before = base / f"before-{len(steps)}"
        shutil.copytree(root, before, symlinks=True)
        log = base / f"events-{len(steps)}.txt"
        start = time.monotonic()
        proc = project.make(args, {"PIPELINE_CRASH_LOG": str(log), "PIPELINE_CRASH_IN": module or "-"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        events = log.read_text().splitlines() if log.exists() else []
        steps.append(
            dict(
                name=name,
                module=module,
                args=args,
                before=before,
                events=events,
                seconds=time.monotonic() - start,
                after=snapshot(root),
            )
        )
    try:
        yield dict(steps=steps, fake=fake, env=env, base=base, root=root)
    finally:
        fake.stop()


def kill_points(steps) -> list[tuple[int, str, float]]:
    """(step index, "event" or "time", event number or seconds): one per killed stage, an event and a
    moment in turn, drawn by a seeded generator."""
    rng = random.Random(SEED)
    points = []
    for i, step in enumerate(steps):
        if step["module"] is None:
            continue
        assert step["events"], f"{step['name']} wrote nothing through pipeline.files"
        if len(points) % 2 == 0:
            points.append((i, "event", rng.randint(1, len(step["events"]))))
        else:
            points.append((i, "time", rng.uniform(0.3, 0.9) * step["seconds"]))
    return points


def test_every_stage_survives_a_kill_anywhere(reference, tmp_path, measured):
    steps, fake = reference["steps"], reference["fake"]
    points = kill_points(steps)
    failures, killed = [], 0
    for i, kind, where in points:
        step = steps[i]
        root = tmp_path / f"point-{len(failures)}-{killed}"
        shutil.copytree(step["before"], root, symlinks=True)
        project = Project(root, reference["env"])
        fake.uploads.clear()
        fake.submissions.clear()
        fake.requests.clear()
        fake.limits.update(numToday=0, numAllowedNow=5)
        label = f"{step['name']}: " + (
            f"event {where} ({step['events'][where - 1]})" if kind == "event" else f"after {where:.1f} s"
        )
        if kind == "event":
            hit = project.make(step["args"], {"PIPELINE_CRASH_AT": str(where), "PIPELINE_CRASH_IN": step["module"]})
        else:
            hit = project.make(step["args"], kill_after=where, module=step["module"])
        if hit.returncode == 0 and kind == "event":
            failures.append(f"{label}: the killed run reported success")
        killed += hit.returncode != 0
        again = project.make(step["args"])
        if again.returncode != 0:
            failures.append(f"{label}: the rerun failed: {again.stderr.strip().splitlines()[-1:]}")
            continue
        diff = differences(step["after"], snapshot(root, reference["root"]))
        if diff:
            failures.append(f"{label}: {', '.join(diff[:5])}")
        if step["module"] == "pipeline.kaggle.submit" and len(fake.uploads) != 1:
            failures.append(f"{label}: {len(fake.uploads)} uploads, not 1")
        shutil.rmtree(root, ignore_errors=True)
    measured(
        f"kill points tried: {len(points)} ({killed} killed the stage mid-run) over "
        f"{sum(s['module'] is not None for s in steps)} stages; reference run: "
        + ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in steps)
    )
    assert not failures, "\n".join(failures)
