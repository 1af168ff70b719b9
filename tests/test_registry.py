"""One model registry: a model added to pipeline/modeling/models.py and params.toml, and nowhere else,
is one that every part of the pipeline knows, Make's rules included; and Make asks Python at most once
while it parses, not at all when its answers are cached."""

import json
import os
import shutil
import time

import pytest

from pipeline.modeling.models import MODELS
from tests.helpers import copy_project, make, run, venv_dir

TOY_FACTORY = '''

def toy(x, seed=None):
    """A toy model for tests/test_registry.py: one small hidden layer on the 784 pixels."""
    layers = _keras().layers
    x = layers.Flatten(name="pixels")(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    return _softmax(x)


MODELS["toy"] = toy
'''

TOY_PARAMS = """
[train.toy]
epochs = 3
batch_size = 128
learning_rate = 0.004
augment = false
elastic = 0.0
crop = 0
clean_tail = 0
backend = "jax"
backend_gpu = "jax"
precision = "float32"
schedule = "cosine"
"""


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("registry"))
    with open(root / "pipeline/modeling/models.py", "a", encoding="utf-8") as f:
        f.write(TOY_FACTORY)
    with open(root / "params.toml", "a", encoding="utf-8") as f:
        f.write(TOY_PARAMS)
    return root


def test_every_list_of_models_reads_the_registry(toy_project):
    plan = make(toy_project, "-n", "search", "MODEL=toy")  # a rule for it, though params.toml gives it no space
    assert "-m pipeline.modeling.search --model toy" in plan
    plan = make(toy_project, "-n", "bench", "EPOCHS=1")
    assert f"--models {','.join([*MODELS, 'toy'])}" in plan
    plan = make(toy_project, "-n", "train", "MODEL=toy", "PARAMS=train.toy.learning_rate=0.01")
    assert "--model toy --out models/toy/params.json train.toy.learning_rate=0.01" in " ".join(plan.split())
    refused = run(["make", f"VENV={venv_dir()}", "train", "MODEL=toy", "EPOCHS=0"], cwd=toy_project)
    assert refused.returncode != 0 and "train.toy.epochs = 0 is out of range" in refused.stderr


@pytest.mark.slow
def test_a_model_added_in_models_py_and_params_toml_alone_cross_validates(toy_project):
    make(toy_project, "cv", "MODEL=toy", "EPOCHS=1", "FOLDS=2")
    metrics = json.loads((toy_project / "models/toy/cv/metrics.json").read_text())
    assert (metrics["model"], metrics["cv"]["folds"], metrics["params"]["epochs"]) == ("toy", 2, 1)
    assert metrics["n_rows"] == 5_000 and 0.1 < metrics["oof_accuracy"] <= 1  # the committed sample
    assert len(metrics["fold_accuracy"]) == 2 and metrics["parameters"] == 784 * 16 + 16 + 16 * 10 + 10


def python_starts(root, *args: str) -> int:
    """How many Python interpreters `make ARGS` starts: the processes strace sees run a python binary
    (a pyenv shim and the interpreter it execs are one process)."""
    trace = root / "make.trace"
    cmd = ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), "make", f"VENV={venv_dir()}", *args]
    proc = run(cmd, cwd=root)
    assert proc.returncode == 0, proc.stderr
    pids = set()
    for line in trace.read_text().splitlines():
        pid, _, call = line.partition(" ")
        call = call.strip()
        if call.startswith("execve(") and call.endswith("= 0"):
            program = call.split('"', 2)[1]
            if program.rsplit("/", 1)[-1].startswith("python"):
                pids.add(pid)
    return len(pids)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_make_asks_python_at_most_once_while_parsing_and_not_at_all_when_cached(tmp_path):
    root = copy_project(tmp_path / "project")
    assert python_starts(root, "help") == 1  # a fresh checkout: the one call
    assert python_starts(root, "help") == 0  # its answers, cached in .make/vars/
    assert python_starts(root) == 0  # `make` with nothing to do
    assert python_starts(root, "help", "EPOCHS=3") == 1  # other inputs, other answers
    assert python_starts(root, "-n", "train") == 1  # whether the data in place is stale: asked every time
    later = time.time() + 5
    os.utime(root / "params.toml", (later, later))
    assert python_starts(root, "help") == 1  # params.toml changed
