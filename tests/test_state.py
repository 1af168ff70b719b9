"""No state that lies: two runs at once in one checkout, and damaged artifacts with fresh times."""

import os
import signal
import subprocess
import time

import pytest

from tests.helpers import copy_project, run, venv_dir

pytestmark = pytest.mark.slow


def make_cmd(*args):
    return ["make", f"VENV={venv_dir()}", *args]


def start(root, *args, env=None):
    """`make ARGS` in the background (stdout and stderr merged)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")} | {"HOME": str(root / "home")}
    return subprocess.Popen(
        make_cmd(*args),
        cwd=root,
        env=full | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopping it stops the stage it runs too
    )


def wait_for_line(proc, text, timeout=300) -> list[str]:
    """Read proc's output until a line contains text; returns the lines read."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in: {''.join(lines)}")


def test_two_make_submissions_at_once_train_once_and_both_succeed(tmp_path):
    """From a fresh copy, so that they meet at every stage (the MLP: the locks, not the model, are the point)."""
    root = copy_project(tmp_path / "project")
    first = start(root, "submission", "MODEL=mlp", "EPOCHS=2")
    time.sleep(1.0)
    second = start(root, "submission", "MODEL=mlp", "EPOCHS=2")
    out1, _ = first.communicate(timeout=600)
    out2, _ = second.communicate(timeout=600)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    both = out1 + out2
    assert both.count("-m pipeline.modeling.train") == 1, both  # trained once between them
    assert both.count("-m pipeline.features") == 1, both
    assert "waiting for " in both and "is up to date: " in both
    assert "No such file" not in both and "Traceback" not in both


def test_with_wait_0_the_second_run_refuses_in_one_line(shared, tmp_path):
    root, _ = shared.copy("submitted", tmp_path / "project")  # features made: the model is what they meet at
    first = start(root, "train", "EPOCHS=2")
    try:
        wait_for_line(first, "training conv_gru")
        second = run(make_cmd("train", "EPOCHS=2", "WAIT=0"), cwd=root)
        assert first.poll() is None  # still training: what the second met was its lock
    finally:
        os.killpg(first.pid, signal.SIGTERM)  # the refusal is the point, not the first run's training
        first.communicate(timeout=60)
    assert second.returncode != 0
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr
    assert (
        "error: models/conv_gru/metrics.json is being written by another run: `make VENV=" in errors[0]
        and "train EPOCHS=2` (pid " in errors[0]
        and "not waiting (WAIT=0)" in errors[0]
    ), errors[0]


# ---------------------------------------------------------------- damaged artifacts
CV = ["MODEL=mlp", "CV=1", "FOLDS=3", "EPOCHS=2"]
MADE_BY = (["submission", "EPOCHS=1"], ["submission", *CV])


def make_all(root):
    for args in MADE_BY:
        proc = run(make_cmd(*args), cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def made(shared, tmp_path_factory):
    """A project copy after `make submit EPOCHS=1` and `make submission MODEL=mlp CV=1 FOLDS=3 EPOCHS=2` (made
    once per run: conftest.py's `shared`)."""
    root, _ = shared.copy("cv", tmp_path_factory.mktemp("damage") / "project")
    make_all(root)
    return root


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # as a full disk or a bad copy leaves it, with a fresh mtime
    return data


def one_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    "damaged, first, again",
    [
        # model.keras: read when the submission is predicted again (its test-time augmentation changed:
        # conv_gru's is on by default, and predict.tta=cnn turns it off)
        (
            "models/conv_gru/model.keras",
            ["submission", "EPOCHS=1", "PARAMS=predict.tta=cnn"],
            ["pipeline.modeling.train", "pipeline.modeling.predict"],
        ),
        # oof.npz: read when the CV submission is written again (it was removed)
        (
            "models/mlp/cv/oof.npz",
            ["submission", *CV],
            ["pipeline.modeling.cv assemble", "pipeline.modeling.predict"],
        ),
        # train.npz: read when the model retrains (its epochs changed)
        ("data/processed/train.npz", ["train", "EPOCHS=2"], ["pipeline.features", "pipeline.modeling.train"]),
    ],
)
def test_a_truncated_artifact_is_named_in_one_line_and_the_same_command_rebuilds_it(made, damaged, first, again):
    make_all(made)  # up to date again after the previous case's rebuild
    path = made / damaged
    if "oof" in damaged:
        (made / "submissions/submission-mlp-cv.csv").unlink()
    original = truncate(path)

    error = one_error(run(make_cmd(*first), cwd=made))

    assert error.startswith(f"error: {damaged} is damaged (") and "set aside as" in error
    assert "rerun the same make command to rebuild it" in error
    proc = run(make_cmd(*first), cwd=made)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in again:
        assert f"-m {stage}" in proc.stdout, proc.stdout
    if not damaged.endswith(".keras"):
        assert path.read_bytes() == original  # rebuilt byte for byte
