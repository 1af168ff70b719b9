"""Data-parallel training through the frameworks' own engines, on a CPU split in two."""

import json
from pathlib import Path

import pytest

from tests.helpers import run, run_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    """A copy of the project with its features made (after `make submit EPOCHS=1`, once per run: conftest.py)."""
    return shared.copy("submitted", tmp_path_factory.mktemp("distribute") / "project")[0]


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_training_uses_two_devices(project, backend):
    """The MLP: what is split is the batch, whatever the model (and it compiles in seconds)."""
    env = {"KERAS_BACKEND": backend, "PIPELINE_CPU_DEVICES": "2"}
    out = f"models/dp-{backend}"
    proc = run_module(
        "pipeline.params",
        "--model",
        "mlp",
        "--out",
        f"{out}/params.json",
        "train.distribute=on",
        "train.mlp.epochs=1",
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_module("pipeline.modeling.train", "--model", "mlp", "--out", out, "--quiet", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((project / out / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["replicas"] == 2
    assert metrics["epochs_run"] == 1 and 0.0 < metrics["val_accuracy"] <= 1.0


def test_training_and_prediction_run_where_tensorflow_is_not_installed(project, tmp_path):
    """A GPU box with JAX but no TensorFlow: nothing on the training path may need TF."""
    import sys
    import sysconfig

    site = tmp_path / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("tensorflow", "tensorboard", "tf_keras")):
            (site / entry.name).symlink_to(entry)
    env = {"KERAS_BACKEND": "jax", "PYTHONPATH": str(site)}
    python = [sys.executable, "-S"]  # no site-packages but the filtered copy above
    proc = run([*python, "-c", "import tensorflow"], cwd=project, env=env)
    assert proc.returncode != 0  # really absent
    out = "models/conv_gru"
    for made in (project / out / "model.keras", project / "submissions/submission.csv"):
        made.unlink(missing_ok=True)  # the shared project's `make submit`: what is asserted must be this test's own
    proc = run(
        [
            *python,
            "-m",
            "pipeline.params",
            "--model",
            "conv_gru",
            "--out",
            f"{out}/params.json",
            "train.conv_gru.epochs=1",
        ],
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    proc = run(
        [*python, "-m", "pipeline.params", "--predict", "--model", "conv_gru", "--out", f"{out}/predict.json"],
        cwd=project,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for module in ("pipeline.modeling.train", "pipeline.modeling.predict"):
        proc = run([*python, "-m", module, "--model", "conv_gru"], cwd=project, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / out / "model.keras").exists() and (project / "submissions/submission.csv").exists()
