"""`make bench` end to end on the sample, capped at one epoch: it runs, and its table adds up."""

import json

import pytest

from tests.helpers import copy_project, run, venv_dir

pytestmark = pytest.mark.slow


def test_bench_times_each_model_against_the_baseline(tmp_path):
    root = copy_project(tmp_path)
    proc = run(["make", f"VENV={venv_dir()}", "bench", "BENCH_MODELS=conv_gru mlp", "BENCH_EPOCHS=1"], cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((root / "bench/results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["baseline (plain Keras, TF, batch 32)", "conv_gru (jax)", "mlp (jax)"]
    baseline = rows[0]
    assert baseline["backend"] == "tensorflow" and baseline["batch_size"] == 32
    for row in rows:
        assert row["epochs"] == 1 and row["train_seconds"] > 0 and row["peak_mib"] > 100
        assert row["train_images_per_second"] == pytest.approx(4500 / row["train_seconds"], rel=0.05)
        assert row["predict_images_per_second"] > 0
    table = (root / "bench/results.md").read_text()
    assert "(1.00x)" in table  # the baseline against itself; every other run as a ratio of it
