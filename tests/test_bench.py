"""`make bench` on the sample, capped at one epoch: the baseline is a standalone notebook, the
pipeline runs go through make train's CLIs, the table adds up, and its arguments are honoured or refused."""

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, copy_project, error_line, run, venv_dir

# Runs the script as __main__, then reports what a notebook could not have had: this project's
# modules, or TensorFlow's op determinism (which would turn off Keras's XLA auto-compilation).
RUN_AND_INSPECT = """
import json, runpy, sys
sys.argv = ["baseline_notebook.py", *sys.argv[1:]]
runpy.run_path("baseline_notebook.py", run_name="__main__")
from tensorflow.python.framework import config as tf_config
print(json.dumps({"pipeline_modules": sorted(m for m in sys.modules if m.split(".")[0] == "pipeline"),
                  "determinism": tf_config.is_op_determinism_enabled()}))
"""


@pytest.mark.slow
def test_baseline_is_a_standalone_notebook(tmp_path):
    script = REPO / "pipeline" / "speed" / "baseline_notebook.py"
    imported = {
        alias.name
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(ast.parse(script.read_text())) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name.split(".")[0] == "pipeline"], imported

    data, nb = tmp_path / "input", tmp_path / "notebook"
    nb.mkdir()
    shutil.copy2(script, nb)  # alone, away from the project
    data.mkdir()
    with zipfile.ZipFile(REPO / "data/sample/digit-recognizer-sample.zip") as zf:
        for name, rows in (("train.csv", 1000), ("test.csv", 200)):  # a cut of the sample: seconds, not minutes
            with zf.open(name) as f:
                pd.read_csv(f, nrows=rows).to_csv(data / name, index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND") and "KAGGLE" not in k}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_AND_INSPECT, "--data-dir", str(data), "--out", "submission.csv", "--epochs", "1"],
        cwd=nb,
        env=env | {"HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    timings, inspected = lines[-2], lines[-1]
    assert inspected == {"pipeline_modules": [], "determinism": False}
    assert timings["backend"] == "tensorflow" and timings["parameters"] == 28_506 and timings["batch_size"] == 32
    assert (timings["train_rows"], timings["val_rows"], timings["test_rows"]) == (900, 100, 200)
    assert timings["epochs_run"] == 1 and len(timings["epochs"]) == 1
    assert 0 < timings["epochs"][0]["elapsed"] <= timings["fit_seconds"] and timings["predict_seconds"] > 0
    submission = (nb / "submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,Label" and len(submission) == 201

    # Its split holds out the very rows the pipeline validates on.
    from sklearn.model_selection import train_test_split

    from pipeline.modeling.trainer import split

    y = pd.read_csv(data / "train.csv", usecols=["label"])["label"].to_numpy()
    _, val_rows = train_test_split(np.arange(len(y)), test_size=0.1, random_state=42, stratify=y)
    assert np.array_equal(np.sort(val_rows), split(y, 0.1, 42)[1])


@pytest.mark.slow
def test_make_bench_times_the_pipeline_against_the_baseline(tmp_path):
    root = copy_project(tmp_path)
    make = ["make", f"VENV={venv_dir()}", "bench"]
    proc = run([*make, "BENCH_MODELS=conv_gru", "EPOCHS=1", "PARAMS=train.conv_gru.batch_size=64"], cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((root / "bench/results.json").read_text())
    base, pipe = results["rows"]
    assert (base["kind"], base["backend"], base["batch_size"], base["epochs"]) == ("baseline", "tensorflow", 32, 1)
    assert (pipe["name"], pipe["backend"], pipe["batch_size"], pipe["epochs"]) == ("conv_gru (jax)", "jax", 64, 1)
    assert base["parameters"] == pipe["parameters"] == 28_506
    for row in (base, pipe):
        assert 0 < row["fit_seconds"] < row["process_seconds"] and row["peak_mib"] > 100
        assert 0 < row["cores_used"] <= os.cpu_count() + 0.5 and 0 <= row["host_steal"] < 1
        assert 0 < row["val_accuracy"] <= 1
        assert row["fit_x_baseline"] == pytest.approx(row["fit_seconds"] / base["fit_seconds"], abs=1e-3)
        if row["seconds_to_target"] is not None:
            assert row["to_target_x_baseline"] == pytest.approx(
                row["seconds_to_target"] / base["fit_seconds"], abs=1e-3
            )
    assert base["fit_x_baseline"] == 1
    assert results["epochs_cap"] == 1 and results["overrides"] == ["train.conv_gru.batch_size=64"]
    assert results["make_command"].split()[:3] == ["make", f"VENV={venv_dir()}", "bench"] and results["machine"]["cpu"]

    # The pipeline run is a models/<model>-like folder written by the train CLI from its own params.json.
    run_dir = root / "bench/runs/conv_gru-jax"
    params = json.loads((run_dir / "params.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (params["batch_size"], params["epochs"]) == (64, 1)
    assert metrics["train_seconds"] == pipe["fit_seconds"] and metrics["epochs_run"] == 1
    assert (run_dir / "model.keras").is_file() and (run_dir / "train.stdout").is_file()
    assert len((root / "bench/runs/baseline/submission.csv").read_text().splitlines()) == 1001
    assert not (root / "models/conv_gru/metrics.json").exists()  # the user's own models are untouched

    table = (root / "bench/results.md").read_text()
    assert "| conv_gru (jax) | jax | 64 | 1 |" in " ".join(table.split()) and "(1.00x)" in table

    # Shorthands that would mean something else here are refused in one line, as is a PARAMS
    # that would move the pipeline off the baseline's split; nothing is rewritten.
    before = (root / "bench/results.json").read_bytes()
    assert "BATCH_SIZE=" in error_line(run([*make, "BATCH_SIZE=64"], cwd=root))
    assert "data.val_fraction" in error_line(run([*make, "PARAMS=data.val_fraction=0.2"], cwd=root))
    assert (root / "bench/results.json").read_bytes() == before


def test_the_hosts_steal_share_is_its_part_of_the_machines_cpu_time():
    from pipeline.speed import bench

    before = [100, 0, 10, 50, 0, 0, 0, 40]
    after = [160, 0, 20, 70, 0, 0, 0, 90]  # 140 ticks in all, 50 of them stolen
    assert bench.steal_share(before, after) == pytest.approx(50 / 140)
    assert bench.steal_share(None, after) is None and bench.steal_share(after, after) is None
    ticks = bench.machine_ticks()
    assert ticks is None or (len(ticks) == 8 and all(t >= 0 for t in ticks))
