"""params.toml and overrides: typed, range-checked, refused with the key named."""

import re

import pytest

from pipeline import params
from pipeline.errors import PipelineError


def test_defaults_load_and_check():
    p = params.resolve([])
    resolved = params.for_model(p, "conv_gru")
    assert resolved["model"] == "conv_gru" and resolved["epochs"] >= 1 and "val_fraction" in resolved["data"]


def test_overrides_are_typed():
    p = params.resolve(["train.conv_gru.epochs=3", "data.val_fraction=0.2", "train.cnn.augment=false"])
    assert p["train"]["conv_gru"]["epochs"] == 3
    assert p["data"]["val_fraction"] == 0.2
    assert p["train"]["cnn"]["augment"] is False


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.conv_gru.epochs=0", "train.conv_gru.epochs = 0 is out of range"),
        ("train.conv_gru.batch_size=-1", "train.conv_gru.batch_size = -1 is out of range"),
        ("data.val_fraction=1.5", "data.val_fraction = 1.5 is out of range"),
        ("data.val_fraction=0", "data.val_fraction = 0.0 is out of range"),
        ("train.conv_gru.learning_rate=fast", "train.conv_gru.learning_rate: expected a number, got 'fast'"),
        ("train.conv_gru.epochs=2.5", "train.conv_gru.epochs: expected an integer, got '2.5'"),
        ("train.conv_gru.augment=maybe", "expected true or false"),
        ("train.conv_gru.epoch=3", "unknown parameter 'train.conv_gru.epoch'"),
        ("train.vgg.epochs=3", "unknown model 'vgg'"),
        ("epochs=3", "unknown parameter 'epochs'"),
        ("train.conv_gru.epochs", "not of the form key=value"),
    ],
)
def test_bad_override_is_refused_naming_the_key(override, fragment):
    with pytest.raises(PipelineError) as info:
        params.resolve([override])
    assert fragment in str(info.value)


def test_bad_params_file_is_refused(tmp_path):
    path = tmp_path / "params.toml"
    path.write_text(re.sub(r"epochs = \d+", 'epochs = "many"', params.config.PARAMS_FILE.read_text(), count=1))
    with pytest.raises(PipelineError, match="parameter train.conv_gru.epochs: expected int, got 'many'"):
        params.resolve([], path)
    path.write_text(params.config.PARAMS_FILE.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(PipelineError, match="unknown parameter section 'extra'"):
        params.resolve([], path)


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (["MODEL=mlp", "EPOCHS=3", "LR=0.01"], "train.mlp.epochs=3 train.mlp.learning_rate=0.01"),
        # An ensemble's EPOCHS/BATCH_SIZE/LR are its members' (ensemble.model, from params or PARAMS=).
        (["MODEL=ensemble", "EPOCHS=3"], "train.cnn.epochs=3"),
        (
            ["MODEL=ensemble", "BATCH_SIZE=64", "PARAMS=ensemble.model=lstm"],
            "ensemble.model=lstm train.lstm.batch_size=64",
        ),
        (["MODEL=cnn", "FULL_DATA=1"], "train.full_data=true"),
    ],
)
def test_make_shorthands_set_the_selected_models_parameters(make_args, expected, tmp_path):
    from tests.helpers import copy_project, run, venv_dir

    proc = run(["make", "-n", f"VENV={venv_dir()}", "models/x/params.json", *make_args], cwd=copy_project(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # The recipe's line alone: under `make test`, a nested make also prints "Leaving directory".
    line = next(line for line in proc.stdout.splitlines() if "--out models/x/params.json" in line)
    assert " ".join(line.split("--out models/x/params.json", 1)[1].split()) == expected


def test_a_fresh_clone_plans_every_ensemble_member(tmp_path):
    """Make reads params.toml while parsing, before .venv exists: a fresh clone's
    `make submit MODEL=ensemble` must plan ensemble.members members, not fall back to one."""
    from tests.helpers import copy_project, run

    project = copy_project(tmp_path / "project")
    proc = run(["make", "-n", f"VENV={tmp_path / 'no-venv-yet'}", "train", "MODEL=ensemble"], cwd=project)
    assert proc.returncode == 0, proc.stderr
    expected = params.resolve([])["ensemble"]["members"]
    assert [f"member --index {i}" in proc.stdout for i in range(1, expected + 2)] == [True] * expected + [False]
    assert f"assemble --members {expected}" in proc.stdout
    assert not (tmp_path / "no-venv-yet").exists()


def test_make_refuses_a_python_older_than_3_11_in_one_line(tmp_path):
    from tests.helpers import copy_project, run

    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\necho False\n")  # what `sys.version_info >= (3, 11)` prints on 3.10
    old.chmod(0o755)
    proc = run(["make", f"PYTHON={old}", "help"], cwd=copy_project(tmp_path / "project"))
    assert proc.returncode != 0
    assert f"PYTHON={old} is missing or older than Python 3.11" in proc.stderr
