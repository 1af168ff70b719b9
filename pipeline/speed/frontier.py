"""`make frontier`: accuracy per compute, for every cross-validated run there is.

For each CV run under models/ (models/<m>/cv/metrics.json, the blend included): its OOF accuracy with
the Wilson 95% interval, the CPU minutes and wall minutes its folds took, the FLOPs of its training
(counted by XLA: pipeline/speed/flops.py, per image x rows x epochs x fold models) and the GFLOP/s
it achieved against this machine's peak. Writes reports/frontier.{json,md} and reports/frontier.png
(OOF accuracy against CPU minutes, log scale, intervals as bars).
"""

from __future__ import annotations

import argparse
import json

from pipeline import config
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli
from pipeline.files import atomic_path, read_json, write_json, write_text
from pipeline.speed import flops


def cv_runs() -> dict[str, dict]:
    """{name: metrics} of every finished CV run, the blend last."""
    found = {p.parent.parent.name: read_json(p) for p in sorted(config.MODELS_DIR.glob("*/cv/metrics.json"))}
    return dict(sorted(found.items(), key=lambda kv: kv[0] == "blend"))


def training_flops(metrics: dict) -> float:
    """FLOPs of training every fold model of a CV run: per image x its training rows x epochs."""
    p, folds = metrics["params"], metrics["cv"]["folds"]
    models = folds * metrics["cv"].get("repeats", 1)  # fold models: folds x repeats
    model_params, count = (p["member"], models * p["members"]) if metrics["model"] == "ensemble" else (p, models)
    options = json.dumps(params_mod.architecture(model_params), sort_keys=True)
    rows = metrics["n_rows"] * (folds - 1) / folds
    return flops.per_image(model_params["model"], options) * rows * model_params["epochs"] * count


def precision_of(metrics: dict) -> str:
    """The precision the run trained in: recorded since "auto" (its params then say only "auto")."""
    p = metrics["params"]
    return metrics.get("precision") or p.get("member", p).get("precision", "float32")


def row(name: str, metrics: dict, runs: dict) -> dict:
    lo, hi = metrics["oof_ci95"]
    # A blend trains nothing of its own: its compute is its members'.
    parts = [runs[m] for m in metrics.get("weights", {}) if m in runs] if name == "blend" else [metrics]
    cpu = sum(m.get("cpu_seconds") or 0 for m in parts)
    wall = sum(m.get("train_seconds") or 0 for m in parts)
    total = sum(training_flops(m) for m in parts)
    precision = "+".join(sorted({precision_of(m) for m in parts}))
    # A mixed blend is held to the higher peak (bfloat16's) of its members'.
    peaks = flops.peak()
    peak = max((peaks.get(x) or 0 for x in precision.split("+")), default=0) or None
    achieved = total / wall / 1e9 if wall else None
    return {
        "run": name,
        "oof_accuracy": metrics["oof_accuracy"],
        "oof_ci95": [lo, hi],
        # repeated k-fold: each row's out-of-fold models averaged (None for one repeat)
        "oof_ensemble_accuracy": metrics.get("oof_ensemble_accuracy"),
        "oof_ensemble_ci95": metrics.get("oof_ensemble_ci95"),
        "cpu_minutes": round(cpu / 60, 1) if cpu else None,
        "wall_minutes": round(wall / 60, 1) if wall else None,
        "training_tflop": round(total / 1e12, 1),
        "gflops": round(achieved, 1) if achieved else None,
        "precision": precision,
        "share_of_peak": round(achieved / peak, 3) if achieved and peak else None,
        # The CPU its folds trained on: a time holds for that CPU only.
        "cpu": ((metrics.get("provenance") or {}).get("run") or {}).get("cpu"),
    }


def _with_interval(accuracy: float | None, ci95) -> str:
    return "-" if accuracy is None else f"{accuracy:.2%} ({ci95[0]:.2%}-{ci95[1]:.2%})"


def markdown(rows: list[dict]) -> str:
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "CV run": r["run"],
                "OOF accuracy (95% CI)": _with_interval(r["oof_accuracy"], r["oof_ci95"]),
                "ensemble OOF (95% CI)": _with_interval(r.get("oof_ensemble_accuracy"), r.get("oof_ensemble_ci95")),
                "CPU min": r["cpu_minutes"],
                "training wall min": r["wall_minutes"],
                "training TFLOP": r["training_tflop"],
                "achieved GFLOP/s": r["gflops"],
                "share of peak": f"{r['share_of_peak']:.0%}" if r["share_of_peak"] else "-",
                "CPU": r.get("cpu") or "?",
            }
            for r in rows
        ]
    )
    peak = flops.peak()["how"]
    return table.to_markdown(index=False, disable_numparse=True) + f"\nShare of peak: of this CPU's ({peak}).\n"


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        if not r["cpu_minutes"]:
            continue
        acc, (lo, hi) = 100 * r["oof_accuracy"], r["oof_ci95"]
        ax.errorbar(r["cpu_minutes"], acc, yerr=[[acc - 100 * lo], [100 * hi - acc]], fmt="o", capsize=3)
        ax.annotate(r["run"], (r["cpu_minutes"], acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if r.get("oof_ensemble_accuracy") is not None:  # the same compute, scored as its models averaged
            ax.plot(r["cpu_minutes"], 100 * r["oof_ensemble_accuracy"], marker="^", color="black")
    ax.set_xscale("log")
    ax.set_xlabel("CPU minutes of training (all fold models)")
    ax.set_ylabel("OOF accuracy, % (95% interval; triangle: ensemble OOF)")
    ax.set_title("Accuracy per compute, 5-fold CV on 42,000 labelled rows")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


@cli
def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    runs = cv_runs()
    if not runs:
        raise PipelineError(f"no CV run under {config.MODELS_DIR}: run `make cv MODEL=<model>` (or `make blend`) first")
    rows = [row(name, m, runs) for name, m in runs.items()]
    write_json(config.REPORTS_DIR / "frontier.json", {"rows": rows, "peak_gflops": flops.peak()})
    table = markdown(rows)
    write_text(config.REPORTS_DIR / "frontier.md", table)
    plot(rows, config.REPORTS_DIR / "frontier.png")
    print(table + f"-> {config.REPORTS_DIR / 'frontier.md'}, frontier.png")


if __name__ == "__main__":
    main()
