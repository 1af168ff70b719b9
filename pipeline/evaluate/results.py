"""`make results`: docs/results.md from the files the runs wrote, and the README's table from it.

Every stage's manifest records the make command and the run (a make invocation) that wrote it,
with its start and finish and the machine (pipeline/provenance.py). From those:

- one row per submission in submissions/: the command that made it, the figure it quotes (OOF
  accuracy with its 95% interval, or a split's accuracy), the wall time of everything that one make
  run did (first stage started to last stage finished; plus building .venv when the run started
  right after it), the machine and the date;
- the frontier of every CV run (reports/frontier.json, from `make frontier`), the comparison
  (reports/compare.json, `make compare`) and the speed table (bench/results.json, `make bench`)
  when those exist.

The README's table (between its `results:` markers) is replaced by the first table of
docs/results.md, so no figure in it is typed by hand (tests/test_results.py checks it). A command
is written as a reader can type it in this checkout: an absolute path given to a variable
(DATA=/.../digit-recognizer.zip) becomes relative to the checkout, so no path of the machine the
run was made on reaches the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import write_text

RESULTS = config.ROOT / "docs" / "results.md"
README = config.ROOT / "README.md"
START, END = "<!-- results: written by `make results` from docs/results.md -->", "<!-- end of results -->"
# A run that began this soon after .venv was finished is a first run: its time includes building it.
VENV_GAP_S = 300


# NAME=/absolute/path in a recorded command line (quoted or not).
ABSOLUTE_SETTING = re.compile(r"""(?<![^\s'"])([A-Z][A-Z0-9_]*=)(/[^\s'"]*)""")


def portable(command: str, root: Path = config.ROOT) -> str:
    """The command with every absolute path given to a variable made relative to the checkout `root`:
    with the checkout at /srv/pipeline, `make submission DATA=/srv/digits.zip` reads `DATA=../digits.zip`."""
    return ABSOLUTE_SETTING.sub(lambda m: m.group(1) + os.path.relpath(m.group(2), root), command)


def _time(text: str | None) -> float | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() if text else None


def manifests(out: Path) -> list[tuple[Path, dict]]:
    """Every JSON a stage wrote that records its run."""
    found = []
    for path in [
        *out.glob("data/raw/source.json"),
        *out.glob("data/processed/features.json"),
        *out.glob("models/**/metrics.json"),
        *out.glob("submissions/*.json"),
    ]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        run = data.get("run") or data.get("provenance", {}).get("run")
        if run and run.get("id"):
            found.append((path, data | {"_run": run}))
    return found


def run_spans(found) -> dict[str, dict]:
    """{run id: {command, started, finished, cores, cpu}} over every manifest of that make run."""
    spans = {}
    for _, data in found:
        run = data["_run"]
        span = spans.setdefault(
            run["id"],
            {
                "command": run["command"],
                "started": None,
                "finished": None,
                "cores": run.get("cores"),
                "cpu": run.get("cpu"),
            },
        )
        for key, pick in (("started", min), ("finished", max)):
            value = _time(run.get(key))
            if value is not None:
                span[key] = value if span[key] is None else pick(span[key], value)
    return spans


def venv_seconds(started: float, venv: Path) -> float | None:
    """How long building .venv took, when this run began right after it (a first run from a clean clone)."""
    try:
        begun, done = (venv / "pyvenv.cfg").stat().st_mtime, (venv / ".installed").stat().st_mtime
    except OSError:
        return None
    # -1: the manifests' times are whole seconds, so the first stage can seem to start before .venv was done.
    return done - begun if -1 <= started - done <= VENV_GAP_S else None


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def figure(prov: dict) -> tuple[str, str]:
    """(what it quotes, its interval) for a submission's provenance."""
    if prov.get("oof_ensemble_accuracy") is not None:  # repeated k-fold: one model per row, and R averaged
        (lo, hi), (elo, ehi), r = prov["oof_ci95"], prov["oof_ensemble_ci95"], prov["repeats"]
        return (
            f"{prov['oof_accuracy']:.2%} OOF ({prov['folds']} folds); {prov['oof_ensemble_accuracy']:.2%} with each "
            f"row's {r} out-of-fold models averaged ({r} x {prov['folds']} folds)",
            f"{lo:.2%}-{hi:.2%}; {elo:.2%}-{ehi:.2%}",
        )
    if prov.get("member_oof_ci95"):  # a blend: its figure, then each member's alone on the same rows
        (lo, hi), members = prov["oof_ci95"], prov["member_oof_ci95"]
        return (
            f"{prov['oof_accuracy']:.2%} OOF ({prov['folds']} folds); alone: "
            + ", ".join(f"{m} {a:.2%}" for m, a in prov["member_oof_accuracy"].items()),
            f"{lo:.2%}-{hi:.2%}; " + ", ".join(f"{m} {mlo:.2%}-{mhi:.2%}" for m, (mlo, mhi) in members.items()),
        )
    if prov.get("oof_accuracy") is not None:
        lo, hi = prov["oof_ci95"]
        return f"{prov['oof_accuracy']:.2%} OOF ({prov['folds']} folds)", f"{lo:.2%}-{hi:.2%}"
    if prov.get("val_accuracy") is not None:
        return f"{prov['val_accuracy']:.2%} on its validation split", "±0.15 points (4,200 rows)"
    return "none (trained on every row)", "-"


def submissions_table(outs: list[Path]) -> tuple[str, list[dict]]:
    """One row per submission under any of the output roots `outs` (a clean clone's venv is its root's)."""
    found = [(out, path, data) for out in outs for path, data in manifests(out)]
    spans = run_spans([(path, data) for _, path, data in found])
    rows = []
    for out, path, prov in found:
        if path.parent.name != "submissions" or "submission_sha256" not in prov:
            continue
        span = spans[prov["_run"]["id"]]
        wall = span["finished"] - span["started"] if span["started"] and span["finished"] else None
        venv = venv_seconds(span["started"], out / ".venv") if span["started"] else None
        quoted, interval = figure(prov)
        rows.append(
            {
                "command": portable(span["command"]),
                "submission": path.with_suffix(".csv").name,
                "quotes": quoted,
                "interval": interval,
                "wall": minutes(wall) + (f" (+ {minutes(venv)} building .venv)" if venv else ""),
                "machine": f"{span['cores']} cores, {span['cpu']}",
                "date": time.strftime("%Y-%m-%d", time.gmtime(span["finished"] or 0)),
                "_finished": span["finished"],
            }
        )
    rows.sort(key=lambda r: r["_finished"] or 0)
    lines = [
        "| command | writes | quotes | 95% interval | wall time | machine | date |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['command']}` | {r['submission']} | {r['quotes']} | {r['interval']} | {r['wall']} | {r['machine']} | "
        f"{r['date']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n", rows


def _section(title: str, path: Path, note: str) -> str:
    if not path.is_file():
        return ""
    return f"\n## {title}\n{note}\n\n{path.read_text(encoding='utf-8').strip()}\n"


def latest(outs: list[Path], rel: str) -> Path:
    """The newest of `rel` under the output roots (a report made more than once: its last)."""
    found = [out / rel for out in outs if (out / rel).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else outs[0] / rel


def bench_run(path: Path) -> str:
    """The bench's command, date, wall time and machine, from its results.json."""
    if not path.is_file():
        return ""
    bench = json.loads(path.read_text(encoding="utf-8"))
    machine = bench.get("machine", {})
    command = portable(bench.get("make_command") or "python -m " + " ".join(bench["command"]))
    when = bench.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
    cpu = f", {machine['cpu']}" if machine.get("cpu") else ""
    return (
        f" Run: `{command}`, {when[:10]}, {bench['wall_seconds'] / 60:.1f} min wall, "
        f"{machine.get('cpus', '?')} cores{cpu}."
    )


def earlier(previous: str) -> tuple[list[str], dict[str, str]]:
    """What a previous docs/results.md holds: the rows of its submissions table, and its other sections by
    title. The document is a log: runs made in other clones (on other machines, other days) stay in it."""
    rows, sections = [], {}
    for part in re.split(r"\n(?=## )", previous)[1:]:
        title, _, body = part.partition("\n")
        title = title.removeprefix("## ").strip()
        if title == "Submissions":
            table = body.strip().split("\n\n")[0].splitlines()
            rows = [line for line in table[2:] if line.startswith("|")]  # after the header and its rule
        else:
            sections[title] = part.strip()
    return rows, sections


def row_key(row: str) -> tuple[str, ...]:
    """A submission row's run: its command, what it wrote, the machine and the day (its figures and times may
    be written differently when the same run is read again)."""
    cells = [cell.strip() for cell in row.strip()[1:-1].split(" | ")]
    return (cells[0], cells[1], cells[5], cells[6]) if len(cells) == 7 else (row,)


def with_earlier(table: str, rows: list[str]) -> str:
    """The submissions table with the earlier rows of other runs, the earlier ones first; a run read again
    replaces its earlier row."""
    lines = table.rstrip("\n").split("\n")
    head, fresh = lines[:2], lines[2:]
    again = {row_key(row) for row in fresh}
    kept = [row for row in rows if row_key(row) not in again]
    return "\n".join([*head, *kept, *fresh]) + "\n"


def document(outs: list[Path], previous: str = "") -> str:
    table, rows = submissions_table(outs)
    old_rows, old_sections = earlier(previous)
    if not rows and not old_rows:
        raise PipelineError(
            f"no submission with a recorded run under {', '.join(str(o / 'submissions') for o in outs)}: "
            "make one first (`make submission ...`), then `make results`"
        )
    table = with_earlier(table, old_rows)

    def section(title: str, path: Path, note: str) -> str:  # this run's, else the earlier document's
        made = _section(title, path, note)
        return made or (f"\n{old_sections[title]}\n" if title in old_sections else "")

    return (
        "\n".join(
            [
                "# Results",
                "",
                "Written by `make results` from the files the runs wrote (each stage's manifest records its make "
                "command, its run, its start and finish and the machine); not edited by hand. Accuracy is measured "
                "only on rows that no choice saw: out of fold (OOF) for cross-validated runs. The wall time is "
                "everything that one make run did, from its first stage to its last (building .venv added when the "
                "run came right after it).",
                "",
                "## Submissions",
                "",
                table,
            ]
        )
        + section(
            "Accuracy per compute (`make frontier`)",
            latest(outs, "reports/frontier.md"),
            "Every CV run: its OOF accuracy, the CPU and wall minutes its fold models took, the FLOPs of "
            "their training (counted by XLA) and the rate achieved against this machine's peak "
            "(333 GFLOP/s float32, 666 bfloat16).",
        )
        + section(
            "Side by side (`make compare`)",
            latest(outs, "reports/compare.md"),
            "McNemar's exact test of each CV run against the best on the same rows.",
        )
        + section(
            "Speed (`make bench`)",
            latest(outs, "bench/results.md"),
            "The pipeline's training against a plain Keras notebook of the study's model, same machine, same run."
            + bench_run(latest(outs, "bench/results.json")),
        )
    )


def update_readme(table: str, readme: Path = README) -> bool:
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: f"{START}\n{table}{END}", text)
    if new != text:
        write_text(readme, new)
    return True


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--from",
        dest="roots",
        type=Path,
        nargs="*",
        default=[],
        help="output roots to read (default: this one; e.g. the clean clones the runs were made in)",
    )
    args = ap.parse_args(argv)
    roots = [r.resolve() for r in args.roots] or [config.OUT]
    previous = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
    text = document(roots, previous)
    write_text(args.out, text)
    table = text.split("## Submissions\n\n", 1)[1].split("\n\n", 1)[0].rstrip("\n") + "\n"
    readme = "and the README's table" if update_readme(table) else f"(no results markers in {README.name})"
    print(f"wrote {args.out} {readme}")


if __name__ == "__main__":
    main()
