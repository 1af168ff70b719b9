"""backend/precision "auto" (pipeline/speed/tune.py) and BUDGET= (pipeline/budget.py), with injected
timings: nothing here measures a real training step."""

import json
import sys
import time

import pytest

from pipeline import budget
from pipeline import params as params_mod
from pipeline.errors import PipelineError
from pipeline.speed import tune

NO_BF16 = ["avx2", "fma"]  # a Zen 3
NATIVE_BF16 = ["avx2", "avx512_bf16", "avx512f", "fma"]  # a Zen 5


@pytest.fixture
def cnn():
    return params_mod.for_model(params_mod.resolve([]), "cnn")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A tuning cache of its own, a fixed machine, and a probe that records what it was asked to time."""
    monkeypatch.setenv("PIPELINE_TUNE_DIR", str(tmp_path))
    monkeypatch.delenv("PIPELINE_TUNE", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    machine = {"cpu": "AMD EPYC", "flags": NO_BF16, "cores": 2, "gpus": [], "packages": {"keras": "3"}}
    monkeypatch.setattr(tune, "machine", lambda: machine)
    monkeypatch.setattr(tune, "gpus", lambda: [])
    monkeypatch.setattr(tune, "installed_backends", lambda: ["tensorflow", "jax"])
    asked = []
    # Zen 3's shape of the CNN's timings (issue 29): emulated bf16 ~13x float32, jax ~2.7x tensorflow.
    speed = {
        "tensorflow float32": 0.32,
        "jax float32": 0.86,
        "tensorflow mixed_bfloat16": 4.2,
        "jax mixed_bfloat16": None,
    }

    def probe(p, backend, precision, best=None):
        asked.append(f"{backend} {precision}")
        return speed[f"{backend} {precision}"]

    monkeypatch.setattr(tune, "probe", probe)
    return {"asked": asked, "machine": machine, "dir": tmp_path}


def test_the_flags_only_order_the_candidates(cnn):
    assert tune.candidates(cnn, ["jax", "tensorflow"], False, NO_BF16)[0] == ("tensorflow", "float32")
    assert tune.candidates(cnn, ["jax", "tensorflow"], False, NATIVE_BF16)[0] == ("tensorflow", "mixed_bfloat16")
    assert len(tune.candidates(cnn, ["jax", "tensorflow"], False, NO_BF16)) == 4  # all are timed all the same
    gpu = tune.candidates(cnn, ["jax", "tensorflow"], True, [])
    assert {q for _, q in gpu} == {"float32", "mixed_float16", "mixed_bfloat16"}


def test_an_explicit_setting_narrows_the_candidates_and_skips_the_measurement(cnn, cache):
    assert tune.candidates(cnn | {"precision": "float32"}, ["jax", "tensorflow"], False, NO_BF16) == [
        ("tensorflow", "float32"),
        ("jax", "float32"),
    ]
    fixed = cnn | {"backend": "jax", "backend_gpu": "jax", "precision": "mixed_bfloat16"}
    assert tune.resolve(fixed) == fixed and cache["asked"] == []
    # On a CPU, backend_gpu = "auto" leaves nothing to measure once backend and precision are set.
    cpu_fixed = cnn | {"backend": "tensorflow", "backend_gpu": "auto", "precision": "float32"}
    assert tune.resolve(cpu_fixed) == cpu_fixed and cache["asked"] == []


def test_the_fastest_measured_wins_and_a_failed_candidate_never_does():
    allowed = [("tensorflow", "float32"), ("jax", "float32"), ("jax", "mixed_bfloat16")]
    timings = {"tensorflow float32": 0.5, "jax float32": 0.3, "jax mixed_bfloat16": None}
    assert tune.pick(timings, allowed) == ("jax", "float32")
    assert tune.pick(timings | {"jax float32": None}, allowed) == ("tensorflow", "float32")
    with pytest.raises(PipelineError, match="every candidate failed"):
        tune.pick(dict.fromkeys(timings), allowed)


def test_auto_measures_once_then_reads_the_cache(cnn, cache):
    said = []
    first = tune.resolve(cnn, say=said.append)
    assert (first["backend"], first["precision"]) == ("tensorflow", "float32")
    assert sorted(cache["asked"]) == [
        "jax float32",
        "jax mixed_bfloat16",
        "tensorflow float32",
        "tensorflow mixed_bfloat16",
    ]
    # The first line of the run names the choice, why, and what it beat.
    assert said[-1].startswith("cnn: float32, tensorflow: measured fastest on this machine (AMD EPYC, 2 cores, AVX2")
    assert "32.0 s/100 steps against" in said[-1] and "420.0 s mixed_bfloat16 tensorflow" in said[-1]
    cache["asked"].clear()
    again = tune.resolve(cnn, say=said.append)
    assert again == first and cache["asked"] == [] and "cached" in said[-1]
    # Another shape (a wider CNN) is another entry; `again` measures everything anew.
    tune.resolve(cnn | {"width": 48}, say=said.append)
    assert len(cache["asked"]) == 4
    tune.resolve(cnn, again=True, say=said.append)
    assert len(cache["asked"]) == 8


def test_the_cache_is_keyed_by_what_decides_speed(cache):
    m = cache["machine"]
    same = tune.cache_file(dict(m))
    assert same == tune.cache_file(m) and same.parent == cache["dir"]
    for changed in ({"flags": NATIVE_BF16}, {"cores": 16}, {"gpus": ["Tesla T4"]}, {"packages": {"keras": "4"}}):
        assert tune.cache_file(m | changed) != same, changed


def test_a_calibration_under_isa_caps_is_kept_apart_and_says_so(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    free = tune.machine()
    assert "isa_caps" not in free and "held to" not in tune.describe(free)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=2")
    held = tune.machine()
    assert held["isa_caps"] == "oneDNN AVX2, XLA AVX2" and tune.cache_file(held) != tune.cache_file(free)
    assert tune.describe(held).endswith(", held to oneDNN AVX2, XLA AVX2")


def test_keras_backend_in_the_environment_wins(cnn, cache, monkeypatch):
    monkeypatch.setattr(tune, "installed_backends", lambda: ["jax"])
    p = tune.resolve(cnn, say=lambda line: None)
    assert p["backend"] == "jax" and sorted(cache["asked"]) == ["jax float32", "jax mixed_bfloat16"]


def test_without_measuring_auto_takes_float32_on_the_models_hinted_backend(cnn, monkeypatch):
    monkeypatch.setenv("PIPELINE_TUNE", "off")
    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # another test file's backend.init() sets it
    monkeypatch.setattr(tune, "installed_backends", lambda: ["tensorflow", "jax"])
    said = []
    p = tune.resolve(cnn, say=said.append)
    assert (p["backend"], p["precision"]) == ("tensorflow", "float32") and "not measured" in said[0]
    gru = params_mod.for_model(params_mod.resolve([]), "conv_gru")
    assert tune.resolve(gru, say=said.append)["backend"] == "jax"


# ---------------------------------------------------------------- the plan


COSTS = [budget.Cost("cnn", 0.30, 128, 30), budget.Cost("conv_gru", 0.02, 128, 40)]


def test_the_configured_recipe_when_it_fits_or_when_there_is_no_budget():
    full = budget.plan(COSTS, 42_000, 5, None)
    assert full.folds == 5 and full.epochs == {"cnn": 30, "conv_gru": 40}
    # 5 folds x 30 epochs x 263 steps x 0.3 s (+10%) ~ 217 min of CNN, ~32 min of conv_gru
    assert 240 < full.seconds / 60 < 270
    assert budget.plan(COSTS, 42_000, 5, full.seconds + 1) == full


def test_a_budget_trims_epochs_first_then_folds():
    full = budget.plan(COSTS, 42_000, 5, None)
    trimmed = budget.plan(COSTS, 42_000, 5, 0.8 * full.seconds)
    assert trimmed.folds == 5 and trimmed.epochs["cnn"] in (21, 26) and trimmed.seconds <= 0.8 * full.seconds
    fewer = budget.plan(COSTS, 42_000, 5, 90 * 60)
    assert fewer.seconds <= 90 * 60 and fewer.folds == 3 and fewer.epochs["cnn"] <= 21
    assert fewer.overrides() == [
        "cv.folds=3",
        "cv.repeats=1",
        f"train.cnn.epochs={fewer.epochs['cnn']}",
        f"train.conv_gru.epochs={fewer.epochs['conv_gru']}",
    ]


def test_a_budget_drops_the_repeats_of_a_repeated_kfold_before_any_epoch_or_fold():
    once = budget.plan(COSTS, 42_000, 5, None)
    thrice = budget.plan(COSTS, 42_000, 5, None, repeats=3)
    assert thrice.repeats == 3 and thrice.seconds == pytest.approx(3 * once.seconds)
    assert "5 folds x 3 repeats x cnn 30 epochs" in thrice.describe(5, COSTS)
    two = budget.plan(COSTS, 42_000, 5, 2.5 * once.seconds, repeats=3)
    assert (two.repeats, two.folds, two.epochs) == (2, 5, once.epochs)
    assert budget.plan(COSTS, 42_000, 5, 1.5 * once.seconds, repeats=3) == once


def test_what_ran_before_the_plan_is_spent_from_the_budget():
    full = budget.plan(COSTS, 42_000, 5, None)
    assert budget.plan(COSTS, 42_000, 5, full.seconds + 1, spent=0) == full
    assert budget.plan(COSTS, 42_000, 5, full.seconds + 1, spent=120).seconds <= full.seconds - 119
    with pytest.raises(PipelineError, match=r"^BUDGET=30 min \(12 min of it spent before the plan\) cannot fit"):
        budget.plan(COSTS, 42_000, 5, 30 * 60, spent=12 * 60)


def test_the_budget_counts_from_when_the_users_make_began(tmp_path):
    """A clean clone's `make submission BUDGET=90` builds .venv and the data first: the clock starts at make."""
    from helpers import run

    probe = "from pipeline import stage; print(stage.make_started())"
    (tmp_path / "Makefile").write_text(f"all:\n\tsleep 2\n\t+{sys.executable} -c '{probe}'\n")
    before = time.time()
    proc = run(["make", "-s"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    started = float(proc.stdout.split()[-1])
    assert before - 1.5 < started < before + 1.5  # the make's start, not the probe's (2 s later)


def test_a_budget_nothing_fits_is_refused_in_one_line_naming_the_smallest_plan():
    with pytest.raises(PipelineError) as exc:
        budget.plan(COSTS, 42_000, 5, 20 * 60)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("BUDGET=20 min cannot fit even the smallest plan here")
    assert "3 folds (of 5) x cnn 9 epochs (of 30), conv_gru 12 epochs (of 40)" in message


def test_a_fold_that_would_end_past_the_deadline_is_not_started(monkeypatch):
    monkeypatch.delenv(budget.DEADLINE_ENV, raising=False)
    assert budget.deadline_refuses(1e9) is None
    monkeypatch.setenv(budget.DEADLINE_ENV, str(time.time() + 600))
    assert budget.deadline_refuses(300) is None
    assert budget.deadline_refuses(900).startswith("not started: it takes ~15 min here and the budget has")


def test_the_plan_quotes_a_measured_accuracy_only_for_its_own_settings(tmp_path, monkeypatch):
    from pipeline import config

    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    p = budget.Plan(5, {"cnn": 30}, 60.0)
    assert "unknown" in budget.expected_accuracy("cnn", p)
    run = {"model": "cnn", "oof_accuracy": 0.9962, "params": {"epochs": 30}, "cv": {"folds": 5}}
    (tmp_path / "cnn/cv").mkdir(parents=True)
    (tmp_path / "cnn/cv/metrics.json").write_text(json.dumps(run))
    assert budget.expected_accuracy("cnn", p) == "expected OOF accuracy 99.62% (a finished run of these settings)"
    assert "not this plan" in budget.expected_accuracy("cnn", budget.Plan(3, {"cnn": 30}, 60.0))


@pytest.mark.slow
def test_a_run_stopped_short_leaves_a_valid_submission_labelled_with_its_folds(tmp_path):
    from helpers import copy_project, make, run

    from pipeline import csvcheck
    from pipeline.files import read_json

    root = copy_project(tmp_path / "project")
    make(root, "models/mlp/cv/fold-2/metrics.json", "MODEL=mlp", "CV=1", "EPOCHS=1", "FOLDS=3")
    code = "from pipeline import budget; budget.partial('mlp', ['train.mlp.epochs=1', 'cv.folds=3'])"
    proc = run([sys.executable, "-c", code], cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "mlp: OOF accuracy" in proc.stdout and "folds 2 of 3 (stopped short)" in proc.stdout
    record = read_json(root / "submissions/submission-mlp-cv.json")
    assert record["contains"] == "folds 2 of 3 (stopped short)"
    assert len(csvcheck.read_submission(root / "submissions/submission-mlp-cv.csv", n_expected=1_000)) == 1_000
    metrics = read_json(root / "models/mlp/cv/metrics.json")
    assert metrics["folds_trained"] == [2] and 1_600 < metrics["n_rows"] < 1_700  # fold 2's held-out rows only


@pytest.mark.parametrize(
    "entries, ghz",
    [
        ({"model name": "AMD EPYC", "cpu MHz": "2596.138"}, 2.596),  # no clock in the brand: the current one
        ({"model name": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu MHz": "3400.000"}, 2.2),  # advertised, not turbo
    ],
)
def test_linux_cpu_is_read_from_proc_cpuinfo_as_py_cpuinfo_reads_it(monkeypatch, entries, ghz):
    from pipeline import provenance

    flags = "fpu sse2 avx2 fma avx512f avx512_bf16"
    monkeypatch.setattr(provenance, "linux_cpuinfo", lambda: entries | {"flags": flags})
    monkeypatch.setattr(provenance, "proc_cpuinfo", lambda: (entries["model name"], flags.split()))
    monkeypatch.setitem(sys.modules, "cpuinfo", None)  # py-cpuinfo is not consulted on Linux
    assert tune.cpu.__wrapped__() == {
        "brand": entries["model name"],
        "flags": ["avx2", "avx512_bf16", "avx512f", "fma"],
        "ghz": ghz,
    }
