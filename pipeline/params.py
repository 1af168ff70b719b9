"""Loading, overriding and checking params.toml; writing each model's resolved params.

`python -m pipeline.params --model conv_gru train.conv_gru.epochs=3` writes
models/conv_gru/params.json only when its content changes, which is what lets Make rerun
a stage when, and only when, a parameter it reads has changed.
"""

import argparse
import copy
import hashlib
import json
import tomllib
from pathlib import Path

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import write_json_if_changed
from pipeline.modeling.models import MODELS, OPTIONS

# key -> (type, lowest, highest, highest is inclusive). Every model section uses TRAIN_KEYS, and its
# factory's own options (pipeline/modeling/models.py's OPTIONS).
DATA_KEYS = {"val_fraction": (float, 0.0, 1.0, False), "split_seed": (int, 0, 2**32 - 1, True)}
TRAIN_COMMON_KEYS = {
    "seed": (int, 0, 2**32 - 1, True),
    "distribute": (str, None, None, True),
    "full_data": (bool, None, None, True),
}
TRAIN_KEYS = {
    "epochs": (int, 1, 10_000, True),
    "batch_size": (int, 1, 65_536, True),
    "learning_rate": (float, 0.0, 10.0, True),
    "augment": (bool, None, None, True),
    "elastic": (float, None, None, True),  # pixels, 0-100 (checked below: a float range here is open at 0)
    "crop": (int, 0, 27, True),  # pixels: random crops of this side resized to 28 in place of zoom and shift; 0 off
    "clean_tail": (int, 0, 10_000, True),  # the last epochs train on the images as they are, unaugmented
    "backend": (str, None, None, True),
    "backend_gpu": (str, None, None, True),
    "precision": (str, None, None, True),
    "schedule": (str, None, None, True),
}
# "auto": the fastest on this machine, measured once and cached (pipeline/speed/tune.py).
BACKENDS = ("auto", "jax", "tensorflow", "torch")
# Keras dtype policies: mixed_* compute in 16 bits and keep float32 weights (the softmax stays float32).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# Learning-rate schedules (pipeline/modeling/train.py compile_model): "cosine", a 10% warm-up then cosine
# decay to 0; "doucet", exponential decay to a tenth over all epochs but the last, then 1000x lower.
SCHEDULES = ("cosine", "doucet")
# Data-parallel training: "auto" is on where there are two GPUs or more (a Kaggle notebook's T4 x2).
DISTRIBUTE = ("auto", "on", "off")
ENSEMBLE_KEYS = {"model": (str, None, None, True), "members": (int, 1, 100, True)}
CV_KEYS = {"folds": (int, 2, 50, True), "seed": (int, 0, 2**32 - 1, True), "repeats": (int, 1, 20, True)}
PREDICT_KEYS = {"tta": (list, None, None, True)}  # the models that predict with test-time augmentation
BLEND_KEYS = {"models": (list, None, None, True)}
# `make search`: the CV fold whose held-out rows score the trials, and how many trials the study holds.
SEARCH_KEYS = {"fold": (int, 1, 50, True), "trials": (int, 1, 10_000, True)}
# The flat sections: [data], [ensemble], [cv], [predict], [blend], [search] (whose [search.<model>]
# tables, the search spaces, are checked by _check_search).
SECTIONS = {
    "data": DATA_KEYS,
    "ensemble": ENSEMBLE_KEYS,
    "cv": CV_KEYS,
    "predict": PREDICT_KEYS,
    "blend": BLEND_KEYS,
    "search": SEARCH_KEYS,
}


def load(path: Path = config.PARAMS_FILE) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: {exc}") from None


def _parse_value(key: str, text: str, kind: type):
    if kind is list:  # a comma-separated list of names: blend.models=cnn,lstm
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise PipelineError(f"parameter {key}: expected true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise PipelineError(
            f"parameter {key}: expected {'an integer' if kind is int else 'a number' if kind is float else 'text'}, "
            f"got {text!r}"
        ) from None


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` / `train.<model>.key=value` strings, typed by the schema."""
    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise PipelineError(f"parameter override {item!r} is not of the form key=value")
        schema, table, leaf = _locate(params, key)
        table[leaf] = _parse_value(key, text, schema[leaf][0])
    return params


def section_keys(model: str) -> dict:
    return TRAIN_KEYS | OPTIONS.get(model, {})


def architecture(p: dict) -> dict:
    """The factory options in one model's resolved params (build_model's **options)."""
    return {k: p[k] for k in OPTIONS.get(p["model"], {})}


def build_options(p: dict) -> dict:
    """build_model's keyword arguments in one model's resolved params, the seed aside: its augmentation
    and its factory options."""
    return {"augment": p["augment"], "elastic": p.get("elastic", 0.0), "crop": p.get("crop", 0)} | architecture(p)


def _locate(params: dict, key: str):
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in SECTIONS and parts[1] in SECTIONS[parts[0]]:
        return SECTIONS[parts[0]], params.setdefault(parts[0], {}), parts[1]
    if len(parts) == 2 and parts[0] == "train" and parts[1] in TRAIN_COMMON_KEYS:
        return TRAIN_COMMON_KEYS, params.setdefault("train", {}), parts[1]
    if len(parts) == 3 and parts[0] == "train" and parts[2] in section_keys(parts[1]):
        if parts[1] not in MODELS:
            raise PipelineError(f"parameter {key}: unknown model '{parts[1]}' (known: {', '.join(MODELS)})")
        return section_keys(parts[1]), params.setdefault("train", {}).setdefault(parts[1], {}), parts[2]
    raise PipelineError(f"unknown parameter '{key}' (see params.toml for the known ones)")


def _check_value(name: str, value, spec) -> None:
    kind, lo, hi, hi_inclusive = spec
    is_bool = isinstance(value, bool)
    ok_type = (
        is_bool
        if kind is bool
        else (
            isinstance(value, (int, float)) and not is_bool
            if kind is float
            else isinstance(value, kind) and not is_bool
        )
    )
    if not ok_type:
        raise PipelineError(f"parameter {name}: expected {kind.__name__}, got {value!r}")
    if kind is list and not all(isinstance(v, str) for v in value):
        raise PipelineError(f"parameter {name}: expected a list of names, got {value!r}")
    if name.endswith((".backend", ".backend_gpu")) and value not in BACKENDS:
        raise PipelineError(f"parameter {name} = {value!r}: must be one of {', '.join(BACKENDS)}")
    if name.endswith(".precision") and value not in PRECISIONS:
        raise PipelineError(f"parameter {name} = {value!r}: must be one of {', '.join(PRECISIONS)}")
    if name.endswith(".schedule") and value not in SCHEDULES:
        raise PipelineError(f"parameter {name} = {value!r}: must be one of {', '.join(SCHEDULES)}")
    if name.endswith(".elastic") and not 0 <= value <= 100:
        raise PipelineError(f"parameter {name} = {value!r} is out of range: must be >= 0 and <= 100")
    if name == "train.distribute" and value not in DISTRIBUTE:
        raise PipelineError(f"parameter {name} = {value!r}: must be one of {', '.join(DISTRIBUTE)}")
    if lo is None:
        return
    too_low = value < lo if kind is int else value <= lo  # a float range is open at the bottom
    too_high = value > hi if hi_inclusive else value >= hi
    if too_low or too_high:
        rng = f"{'>=' if kind is int else '>'} {lo} and {'<=' if hi_inclusive else '<'} {hi}"
        raise PipelineError(f"parameter {name} = {value!r} is out of range: must be {rng}")


def _check_table(prefix: str, table: dict, schema: dict) -> None:
    for key, value in table.items():
        if key not in schema:
            raise PipelineError(f"unknown parameter '{prefix}.{key}' in params")
        _check_value(f"{prefix}.{key}", value, schema[key])
    for key in schema:
        if key not in table:
            raise PipelineError(f"parameter {prefix}.{key} is missing from params")


def preset(params: dict, name: str) -> dict:
    """A named setting of params.toml's [presets]: {"model": ..., "overrides": [...]}."""
    presets = params.get("presets", {})
    if name not in presets:
        raise PipelineError(f"PRESET={name}: no such preset in params.toml (known: {', '.join(presets) or 'none'})")
    return presets[name]


def _check_presets(params: dict) -> None:
    for name, table in params.get("presets", {}).items():
        if set(table) != {"model", "overrides", "about"}:
            raise PipelineError(f"presets.{name} must have exactly: about, model, overrides")
        if table["model"] not in (*MODELS, "ensemble", "blend"):
            raise PipelineError(f"presets.{name}.model = {table['model']!r}: unknown model")
        if not all(isinstance(o, str) for o in table["overrides"]):
            raise PipelineError(f"presets.{name}.overrides must be a list of key=value strings")
        try:
            check(apply_overrides({k: v for k, v in params.items() if k != "presets"}, table["overrides"]))
        except PipelineError as exc:
            raise PipelineError(f"presets.{name}: {exc}") from None


def check(params: dict) -> dict:
    """Refuse unknown keys, wrong types and out-of-range values, naming the key."""
    for section in params:
        if section not in (*SECTIONS, "train", "presets"):
            raise PipelineError(f"unknown parameter section '{section}' in params")
    for section, schema in SECTIONS.items():
        flat = {k: v for k, v in params.get(section, {}).items() if section != "search" or not isinstance(v, dict)}
        _check_table(section, flat, schema)
    _check_search(params)
    if params["ensemble"]["model"] not in MODELS:
        raise PipelineError(
            f"parameter ensemble.model = {params['ensemble']['model']!r}: unknown model (known: {', '.join(MODELS)})"
        )
    for name in params["predict"]["tta"]:
        if name not in (*MODELS, "ensemble"):
            raise PipelineError(f"parameter predict.tta: unknown model {name!r} (known: {', '.join(MODELS)}, ensemble)")
    for name in params["blend"]["models"]:
        if name not in (*MODELS, "ensemble"):
            raise PipelineError(
                f"parameter blend.models: unknown model {name!r} (known: {', '.join(MODELS)}, ensemble)"
            )
    if len(params["blend"]["models"]) < 2:
        raise PipelineError("parameter blend.models: a blend needs at least two models")
    train = params.get("train", {})
    _check_table("train", {k: v for k, v in train.items() if not isinstance(v, dict)}, TRAIN_COMMON_KEYS)
    for model, table in train.items():
        if isinstance(table, dict):
            if model not in MODELS:
                raise PipelineError(f"unknown model section 'train.{model}' in params (known: {', '.join(MODELS)})")
            _check_table(f"train.{model}", table, section_keys(model))
    _check_presets(params)  # last: an error in params itself is named as such, not as a preset's
    return params


def _check_search(params: dict) -> None:
    """Each [search.<model>] key is one of train.<model>'s, searched over {low, high} (with `log` or
    `step`, as Optuna's suggest_int / suggest_float take them) or over {choices}, every value valid
    for that key."""
    if params["search"]["fold"] > params["cv"]["folds"]:
        raise PipelineError(f"parameter search.fold = {params['search']['fold']}: cv.folds is {params['cv']['folds']}")
    for model, space in params["search"].items():
        if not isinstance(space, dict):
            continue
        if model not in MODELS:
            raise PipelineError(f"unknown model section 'search.{model}' in params (known: {', '.join(MODELS)})")
        schema = section_keys(model)
        for key, spec in space.items():
            name = f"search.{model}.{key}"
            if key not in schema:
                raise PipelineError(f"unknown parameter '{name}': not a key of train.{model}")
            if key in ("backend", "backend_gpu"):
                raise PipelineError(f"parameter {name}: a process has one Keras backend, so it cannot be searched")
            kind = schema[key][0]
            if not isinstance(spec, dict) or not (
                set(spec) == {"choices"} or {"low", "high"} <= set(spec) <= {"low", "high", "log", "step"}
            ):
                raise PipelineError(
                    f"parameter {name}: expected {{low = ..., high = ...}} (with log = true or step = ...) "
                    f"or {{choices = [...]}}, got {spec!r}"
                )
            if "choices" in spec:
                if not isinstance(spec["choices"], list) or not spec["choices"]:
                    raise PipelineError(f"parameter {name}.choices: expected a non-empty list, got {spec['choices']!r}")
                for value in spec["choices"]:
                    _check_value(name, value, schema[key])
                continue
            if kind not in (int, float):
                raise PipelineError(f"parameter {name}: train.{model}.{key} is not a number: give {{choices = [...]}}")
            for bound in ("low", "high"):
                _check_value(name, spec[bound], schema[key])
            if not spec["low"] < spec["high"]:
                raise PipelineError(f"parameter {name}: low ({spec['low']}) must be below high ({spec['high']})")
            if not isinstance(spec.get("log", False), bool) or (spec.get("log") and "step" in spec):
                raise PipelineError(f"parameter {name}: log must be true or false, and a log scale takes no step")


def for_search(params: dict, model: str) -> dict:
    """What `make search MODEL=<model>` reads: the model's training params without the single split's
    settings, the folds, the fold that scores the trials, the number of trials and the space."""
    if model not in params["search"] or not isinstance(params["search"][model], dict):
        raise PipelineError(f"params.toml has no [search.{model}] table: the settings to search for {model}")
    train = {k: v for k, v in for_model(params, model).items() if k not in ("data", "full_data")}
    for key, spec in params["search"][model].items():  # trial 0 is the current settings: the space must hold them
        value = train[key]
        inside = (
            value in spec["choices"]
            if "choices" in spec
            else (
                spec["low"] <= value <= spec["high"]
                and (
                    "step" not in spec
                    or abs((value - spec["low"]) / spec["step"] - round((value - spec["low"]) / spec["step"])) < 1e-9
                )
            )
        )
        if not inside:
            raise PipelineError(
                f"parameter search.{model}.{key}: the current train.{model}.{key} = {value!r} is outside "
                f"its space {spec}; the study's trial 0 is the current settings, so the space must hold them"
            )
    return {
        "model": model,
        "train": train,
        "cv": params["cv"],
        "fold": params["search"]["fold"],
        "trials": params["search"]["trials"],
        "space": params["search"][model],
    }


def for_model(params: dict, model: str) -> dict:
    """What one model's training reads: the data split, the seed and its own section."""
    train = params["train"]
    if model not in MODELS:
        raise PipelineError(f"unknown model '{model}' (known: {', '.join(MODELS)}, ensemble)")
    if model not in train:
        raise PipelineError(f"params has no [train.{model}] section")
    common = {k: train[k] for k in TRAIN_COMMON_KEYS}
    return {"model": model, "data": params["data"], **common, **train[model]}


def resolve(overrides: list[str], path: Path = config.PARAMS_FILE) -> dict:
    return check(apply_overrides(load(path), overrides))


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def for_cv(params: dict, model: str) -> dict:
    """What a model's cross-validation folds read: its training params without the single split's
    settings (every labelled row is in some fold), plus the fold settings."""
    if model == "ensemble":
        resolved = for_ensemble(params) | {"members": params["ensemble"]["members"]}  # all trained per fold
        resolved["member"] = {k: v for k, v in resolved["member"].items() if k not in ("data", "full_data")}
    else:
        resolved = {k: v for k, v in for_model(params, model).items() if k not in ("data", "full_data")}
    # Not the repeat count: a fold model is the same whatever the repeats after it (adding repeats must not
    # retrain the finished folds); the assembly is told it (`cv assemble --repeats`).
    return resolved | {"cv": {k: v for k, v in params["cv"].items() if k != "repeats"}}


def for_ensemble(params: dict) -> dict:
    # Not the member count: adding members must not retrain the finished ones.
    ensemble = {k: v for k, v in params["ensemble"].items() if k != "members"}
    return {"model": "ensemble", "ensemble": ensemble, "member": for_model(params, ensemble["model"])}


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="write this model's resolved training params to --out")
    ap.add_argument("--cv", action="store_true", help="with --model: the params of its cross-validation folds")
    ap.add_argument("--search", action="store_true", help="with --model: the params of its `make search` study")
    ap.add_argument("--predict", action="store_true", help="with --model: write its prediction params to --out")
    ap.add_argument("--out", type=Path, help="where to write them (only if changed)")
    # With neither --model nor --predict: only check params.toml and the overrides.
    ap.add_argument("overrides", nargs="*", help="key=value, e.g. train.conv_gru.epochs=3")
    args = ap.parse_args(argv)
    params = resolve(args.overrides)
    if not (args.model or args.predict):
        return  # only checking
    if not args.out:
        raise PipelineError("--model and --predict need --out")
    if args.predict:
        if not args.model:
            raise PipelineError("--predict needs --model: test-time augmentation is chosen per model")
        resolved = {"tta": args.model in params["predict"]["tta"]}
    elif args.cv:
        resolved = for_cv(params, args.model)
    elif args.search:
        resolved = for_search(params, args.model)
    elif args.model == "ensemble":
        resolved = for_ensemble(params)
    else:
        resolved = for_model(params, args.model)
    write_json_if_changed(args.out, resolved)


if __name__ == "__main__":
    main()
