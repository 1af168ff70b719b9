"""Mixed precision (train.<model>.precision) on the CPU: it trains, saves, resumes to the same
weights and predicts the labels float32 predicts, within the noise of the sample."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import csvcheck
from tests.helpers import run_module

pytestmark = pytest.mark.slow

EPOCHS = 4


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    """A copy of the project with its features made (after `make submit EPOCHS=1`, once per run: conftest.py)."""
    return shared.copy("submitted", tmp_path_factory.mktemp("precision") / "project")[0]


def prepare(root, name: str, precision: str) -> None:
    for args in (
        [
            "--model",
            "mlp",
            "--out",
            f"models/{name}/params.json",
            f"train.mlp.precision={precision}",
            f"train.mlp.epochs={EPOCHS}",
        ],
        ["--predict", "--model", "mlp", "--out", f"models/{name}/predict.json"],
    ):
        proc = run_module("pipeline.params", *args, cwd=root)
        assert proc.returncode == 0, proc.stderr


def train(root, name: str) -> dict:
    proc = run_module("pipeline.modeling.train", "--model", "mlp", "--out", f"models/{name}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / f"models/{name}/metrics.json").read_text())


def weights(root, name: str) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(root / f"models/{name}/model.keras").get_weights()


def predict(root, name: str) -> np.ndarray:
    proc = run_module("pipeline.modeling.predict", "--model", name, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return csvcheck.read_submission(root / f"submissions/submission-{name}.csv", n_expected=1000)


@pytest.fixture(scope="module")
def reference(project):
    """The float32 run both precisions are held to, and its test labels."""
    prepare(project, "mlp-float32", "float32")
    return train(project, "mlp-float32"), predict(project, "mlp-float32")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_resumes_and_predicts_like_float32(project, reference, precision):
    reference_metrics, reference_labels = reference
    name = f"mlp-{precision}"
    prepare(project, name, precision)
    mixed = train(project, name)
    assert mixed["params"]["precision"] == precision

    # Killed after its first epoch, then resumed, it ends with the weights of the uninterrupted run.
    resumed = f"{name}-resumed"
    prepare(project, resumed, precision)
    cmd = [sys.executable, "-m", "pipeline.modeling.train", "--model", "mlp", "--out", f"models/{resumed}"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((project / f"models/{resumed}").glob(".work-*/state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (project / f"models/{resumed}/metrics.json").exists()
    train(project, resumed)
    for a, b in zip(weights(project, name), weights(project, resumed), strict=True):
        np.testing.assert_array_equal(a, b)

    # The same labels as float32, within noise: 500 validation rows, 1,000 test rows.
    assert abs(mixed["val_accuracy"] - reference_metrics["val_accuracy"]) < 0.03, (
        mixed["val_accuracy"],
        reference_metrics["val_accuracy"],
    )
    agree = (predict(project, name) == reference_labels).mean()
    assert agree > 0.95, agree
