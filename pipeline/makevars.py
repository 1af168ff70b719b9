"""Everything Make needs from Python, asked once while it parses: a Makefile fragment it includes.

`python -m pipeline.makevars --out .make/vars/<key>.mk NAME=value ...` (Make's MODEL, CV, PRESET,
PARAMS and the shorthands EPOCHS= ... FULL_DATA=, and PIPELINE_OUT, KAGGLE_KERNEL_RUN_TYPE and
KAGGLE_ROOT, which place the outputs) writes:

- the paths, from pipeline/config.py (OUT_DIR, RAW, ..., STATE; SUBMISSION for MODEL and CV);
- the model registry, pipeline/modeling/models.py: MODEL_NAMES, and COMPARE_DEFAULT (the study's
  models, the blend's and the blend);
- PRESET='s model, and OVERRIDES: the parameter overrides the shorthands stand for, checked with
  params.toml; the first problem is MAKEVARS_ERROR, which Make refuses before any stage runs;
- what the rules are built from: the folds, the ensemble's members, the blend's models, the models
  whose CV folds train one at a time;
- CODE.<module>, the pipeline's files each module runs (pipeline/codedeps.py), from code.mk beside
  the file, rewritten only when a .py file changes.

Make names the file by a hash of these inputs and reuses it while params.toml and the pipeline's .py
files are older than it: `make help`, or a `make` with nothing to do, starts no Python. With
`--data-check DATA` it also says whether the data in place is stale (pipeline/datasource.py), which
no file's time tells (Kaggle credentials or a notebook's input may have appeared since): Make asks
that on every run that may need the data, in this same call.

Prints `vars-ok <file>`, with ` stale` after it when the data stage must run, or `error: ...` where
Make cannot go on. Standard library only: it runs before .venv exists.
"""

import sys

if sys.version_info < (3, 11):  # noqa: UP036 (tomllib; Make names the problem in one line)
    raise SystemExit(1)

import argparse
import os
from pathlib import Path

# The shorthands that set the selected model's section (an ensemble's: its members').
SHORTHANDS = {"EPOCHS": "epochs", "BATCH_SIZE": "batch_size", "LR": "learning_rate"}
# The other shorthands: Make's name -> (key, value given -> its value).
SETTINGS = {
    "SEED": ("train.seed", str),
    "MEMBERS": ("ensemble.members", str),
    "FOLDS": ("cv.folds", str),
    "TRIALS": ("search.trials", str),
    "FULL_DATA": ("train.full_data", lambda _: "true"),
}
INPUTS = ("MODEL", "MODEL_ORIGIN", "CV", "PRESET", "PARAMS", *SHORTHANDS, *SETTINGS)
ENVIRONMENT = ("PIPELINE_OUT", "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_ROOT")  # read by pipeline/config.py
KEEP = 64  # fragments kept, one per set of inputs, the most recently written


def shorthands(v: dict) -> dict:
    """{"model", "cv", "overrides", "error"}: what MODEL=, PRESET= and the shorthands ask for. The
    error is the first problem, worded as Make refuses it."""
    from pipeline import params as params_mod
    from pipeline.errors import PipelineError

    model, cv, preset, error = v["MODEL"], v["CV"], [], ""
    if v["PRESET"]:
        try:
            table = params_mod.preset(params_mod.resolve([]), v["PRESET"])
        except PipelineError as exc:
            error = f"error: {exc}"
        else:
            if v["MODEL_ORIGIN"] == "command line" and model != table["model"]:
                error = f"PRESET={v['PRESET']} trains MODEL={table['model']}: drop MODEL={model}"
            model, preset = table["model"], list(table["overrides"])
    if model == "blend":
        cv = "1"
        if any(v[name] for name in (*SHORTHANDS, "FULL_DATA")):
            error = error or (
                "MODEL=blend takes PARAMS= (blend.models, and each model's train.<model>.* keys), "
                "not EPOCHS=, BATCH_SIZE=, LR= or FULL_DATA="
            )
    overrides = [*preset, *v["PARAMS"].split()]
    section = model
    if model == "ensemble" and any(v[name] for name in SHORTHANDS):
        try:
            section = params_mod.resolve(overrides)["ensemble"]["model"]
        except PipelineError:
            section = ""  # the check below names what is wrong
    overrides += [f"train.{section}.{key}={v[name]}" for name, key in SHORTHANDS.items() if v[name]]
    overrides += [f"{key}={value(v[name])}" for name, (key, value) in SETTINGS.items() if v[name]]
    return {"model": model, "cv": cv, "overrides": overrides, "error": error}


def _for_make(path: Path) -> str:
    """Relative to the checkout when inside it (short targets in Make's output), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _value(text: str) -> str:
    """Text as the value of a Make assignment: `$` and `#` mean something there."""
    return str(text).replace("$", "$$").replace("#", "\\#")


def _newest(root: Path) -> tuple[float, list[str]]:
    """(the latest change to the pipeline's .py files or folders, the files): what code.mk is derived from."""
    files, newest = [], 0.0
    for top, dirs, names in os.walk(root / "pipeline"):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        newest = max(newest, os.stat(top).st_mtime)
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(top, name)
                files.append(os.path.relpath(path, root))
                newest = max(newest, os.stat(path).st_mtime)
    return newest, files


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def code_mk(folder: Path, root: Path) -> Path:
    """folder/code.mk, the CODE.<module> variables, rewritten when the pipeline's .py files changed."""
    from pipeline import codedeps

    path = folder / "code.mk"
    newest, files = _newest(root)
    header = f"# from: {' '.join(files)}\n"
    try:
        if path.stat().st_mtime >= newest and path.open(encoding="utf-8").readline() == header:
            return path
    except OSError:
        pass
    _write(path, header + codedeps.makefile(root))
    return path


def fragment(v: dict, code: Path) -> str:
    from pipeline import config
    from pipeline.modeling.models import MODELS, ONE_FOLD_AT_A_TIME, STUDY_ACCURACY

    asked = shorthands(v)
    params = None
    if not asked["error"] or asked["error"].startswith("MODEL=blend"):
        from pipeline import params as params_mod
        from pipeline.errors import PipelineError

        try:
            params = params_mod.resolve(asked["overrides"])
        except PipelineError as exc:
            asked["error"] = asked["error"] or f"error: {exc}"
    paths = {
        "OUT_DIR": config.OUT,
        "RAW": config.RAW_DIR,
        "PROCESSED": config.PROCESSED_DIR,
        "DOWNLOAD": config.DOWNLOAD_DIR,
        "MODELS": config.MODELS_DIR,
        "SUBMISSIONS": config.SUBMISSIONS_DIR,
        "REPORTS": config.REPORTS_DIR,
        "LOGS": config.LOGS_DIR,
        "BENCH": config.BENCH_DIR,
        "KERNEL_DIR": config.KERNEL_DIR,
        "STATE": config.STATE_DIR,
        "SUBMISSION": config.submission_path(asked["model"], cv=bool(asked["cv"])),
    }
    for name, path in paths.items():
        if " " in str(path):
            raise ValueError(f"{name} path {path} contains a space, which Make cannot handle")
    blend = params["blend"]["models"] if params else []
    lines = {
        **{name: _for_make(path) for name, path in paths.items()},
        "MODEL_NAMES": " ".join(MODELS),
        "COMPARE_DEFAULT": " ".join(dict.fromkeys([*STUDY_ACCURACY, *blend, "blend"])),
        "OVERRIDES": " ".join(asked["overrides"]),
        "MAKEVARS_ERROR": asked["error"],
        "N_FOLDS": params["cv"]["folds"] if params else "",
        "N_REPEATS": params["cv"]["repeats"] if params else "",
        # fold models 1..folds x repeats (pipeline/modeling/cv.py: repeat r's are r x folds + 1..folds)
        "FOLD_NUMBERS": " ".join(map(str, range(1, params["cv"]["folds"] * params["cv"]["repeats"] + 1)))
        if params
        else "",
        "N_MEMBERS": params["ensemble"]["members"] if params else "",
        "MEMBER_NUMBERS": " ".join(map(str, range(1, params["ensemble"]["members"] + 1))) if params else "",
        "BLEND_MODELS": " ".join(blend),
        "CV_ONE_AT_A_TIME": " ".join([*ONE_FOLD_AT_A_TIME, "ensemble"]),
    }
    if v["PRESET"] and asked["model"] != v["MODEL"]:
        lines["MODEL"] = asked["model"]
    if asked["cv"] != v["CV"]:
        lines["CV"] = asked["cv"]
    given = " ".join(f"{name}={v[name]}" for name in (*INPUTS, *ENVIRONMENT) if v[name])
    return (
        f"# Written by pipeline/makevars.py for: {_value(given)}\n"
        + "".join(f"{name} := {_value(value)}\n" for name, value in lines.items())
        + f"include {code}\n"
    )


def prune(folder: Path, keep: int = KEEP) -> None:
    """Drop all but the `keep` newest fragments (each set of Make's inputs has its own)."""
    found = []
    for path in folder.glob("*.mk"):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            pass
    for _, path in sorted(found, reverse=True)[keep:]:
        if path.name != "code.mk":
            path.unlink(missing_ok=True)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the fragment to write")
    ap.add_argument("--data-check", metavar="DATA", help="also say whether the data in place is stale (DATA=, or '')")
    ap.add_argument("inputs", nargs="*", metavar="NAME=value", help=f"Make's {', '.join(INPUTS + ENVIRONMENT)}")
    args = ap.parse_args(argv)
    v = dict.fromkeys((*INPUTS, *ENVIRONMENT), "")
    for item in args.inputs:
        name, sep, value = item.partition("=")
        if not sep or name not in v:
            ap.error(f"unexpected {item!r}")
        v[name] = value.strip()
    for name in ENVIRONMENT:  # before pipeline.config reads them (Make's $(shell) may not pass what it exports)
        if v[name]:
            os.environ[name] = v[name]
        else:
            os.environ.pop(name, None)
    from pipeline import config

    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = fragment(v, code_mk(args.out.parent, config.ROOT))
        _write(args.out, text)
        prune(args.out.parent)
    except (OSError, ValueError) as exc:
        return f"error: {exc}"
    answer = f"vars-ok {args.out}"
    if args.data_check is not None:
        from pipeline import datasource

        data = args.data_check.strip() or None
        if datasource.stale(data, datasource.recorded_manifest(), config.KAGGLE_INPUT, datasource.kaggle_ready):
            answer += " stale"
    return answer


if __name__ == "__main__":
    print(main())
