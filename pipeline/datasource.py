"""Which source the data stage takes, and whether the data in place is stale. Standard library only.

Sources, first that applies wins:
  1. DATA=<zip or folder in the competition layout> (a local download, ../shared/...),
     or DATA=kaggle for the Kaggle API explicitly;
  2. without DATA=, the source the data in place came from, if it was a local one;
  3. the competition's files under <kaggle root>/input, wherever Kaggle mounted them
     (`find_competition`), inside a Kaggle notebook;
  4. the Kaggle API, when credentials are configured;
  5. the small sample committed in data/sample/ (a demo, not the competition data).

`stale()` says when the data stage must run although no file it depends on changed: nothing in
place yet, a DATA= other than the one in place, or demo data in place while a real source has
appeared since (a notebook's input or Kaggle credentials). Make asks it on every run that may need
the data, while it parses (pipeline/makevars.py); it writes nothing, so a mistyped DATA= leaves no
trace once it has failed.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import config
from pipeline.errors import PipelineError

API = "kaggle"  # DATA=kaggle: the Kaggle API, even when other data is in place

# Where a notebook sees an attached competition, newest layout first: pushed notebooks (2026) read
# input/competitions/<slug>/, older notebooks input/<slug>/ (datasets: input/datasets/<owner>/<slug>/).
# Undocumented and changed before, so the last resort is a search of input/ (`find_competition`).
MOUNTS = (("competitions", config.COMPETITION), (config.COMPETITION,))
SEARCH_DEPTH = 4  # input/datasets/<owner>/<slug>/<folder>
# The first bytes of each competition file (a UTF-8 BOM is allowed, as csvcheck allows it).
HEADERS = {"train.csv": "label,pixel0,", "test.csv": "pixel0,", "sample_submission.csv": "ImageId,Label"}


def holds_competition(folder: Path) -> bool:
    """The three files, each starting with the competition's header."""
    for name, header in HEADERS.items():
        try:
            with open(folder / name, encoding="utf-8", errors="replace") as f:
                if not f.read(len(header) + 1).lstrip("\ufeff").startswith(header):
                    return False
        except OSError:
            return False
    return True


def find_competition(input_root: Path) -> Path | None:
    """The folder under a notebook's input/ that holds the competition's files: a known mount,
    else the first (by path) found by walking input/ down to SEARCH_DEPTH levels."""
    for parts in MOUNTS:
        if holds_competition(input_root.joinpath(*parts)):
            return input_root.joinpath(*parts)
    if not input_root.is_dir():
        return None
    for top, dirs, files in sorted(os.walk(input_root)):
        dirs.sort()
        if len(Path(top).relative_to(input_root).parts) >= SEARCH_DEPTH:
            dirs.clear()
        if set(HEADERS) <= set(files) and holds_competition(Path(top)):
            return Path(top)
    return None


def listing(input_root: Path, limit: int = 12) -> str:
    """What input/ holds, two levels down (three under competitions/ and datasets/), for the error."""
    found = []
    for top, dirs, files in os.walk(input_root):
        rel = Path(top).relative_to(input_root)
        depth = 3 if rel.parts[:1] in (("competitions",), ("datasets",)) else 2
        if len(rel.parts) >= depth - 1:
            found += [str(rel / d) for d in dirs] + [str(rel / f) for f in files]
            dirs.clear()
        elif not dirs:
            found += [str(rel / f) for f in files]
        dirs.sort()
    found = sorted(found)
    shown = ", ".join(found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return shown or "nothing"


def missing_in_notebook(input_root: Path) -> str:
    return (
        f"the {config.COMPETITION} competition's files (train.csv, test.csv, sample_submission.csv) are nowhere "
        f"under {input_root}, which holds: "
        f"{listing(input_root) if input_root.is_dir() else 'nothing (no such folder)'}; "
        f"attach the {config.COMPETITION} competition to this notebook"
    )


@dataclass(frozen=True)
class Source:
    origin: str  # "local", "kaggle-notebook", "kaggle-api" or "sample"
    path: Path | None  # a zip or a folder; None for the API until downloaded

    @property
    def from_kaggle(self) -> bool:
        """Only files that came from Kaggle are the competition's own test set."""
        return self.origin in ("kaggle-api", "kaggle-notebook")

    @property
    def request(self) -> str:
        """What DATA= asks for this source again (recorded in source.json)."""
        return str(self.path.resolve()) if self.origin == "local" else self.origin


def kaggle_ready() -> bool:
    from pipeline.kaggle import client as kaggle_client  # standard library only until it talks to Kaggle

    return kaggle_client.credentials_available()


def requested(data: str | None) -> str | None:
    """DATA= as recorded: an absolute path, or 'kaggle'."""
    if not data:
        return None
    return API if data == API else str(Path(data).expanduser().resolve())


def choose_source(
    data: str | None, input_root: Path, kaggle_ready, recorded: dict | None = None, in_notebook: bool = False
) -> Source:
    """The first source that applies; `kaggle_ready()` is asked only when it comes to that. In a
    notebook the demo sample is never taken: without the competition attached it is an error."""
    if data == API:
        return Source("kaggle-api", None)
    if data:
        path = Path(data).expanduser()
        if not path.exists():
            raise PipelineError(f"DATA={data}: no such file or folder")
        return Source("local", path)
    if recorded and recorded.get("origin") == "local":
        path = Path(recorded["request"])
        if not path.exists():
            raise PipelineError(
                f"the data in place came from {path}, which is gone: pass DATA=<competition zip or folder>"
            )
        return Source("local", path)
    mounted = find_competition(input_root)
    if mounted is not None:
        return Source("kaggle-notebook", mounted)
    if kaggle_ready():
        return Source("kaggle-api", None)
    if in_notebook:
        raise PipelineError(missing_in_notebook(input_root))
    return Source("sample", config.SAMPLE_ZIP)


def recorded_manifest(raw_dir: Path = config.RAW_DIR) -> dict | None:
    try:
        return json.loads((raw_dir / "source.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stale(data: str | None, manifest: dict | None, input_root: Path, kaggle_ready) -> bool:
    if manifest is None:
        return True
    if data:
        return requested(data) != manifest.get("request")
    if manifest.get("origin") == "sample":  # demo data: switch as soon as the real data can be had
        return find_competition(input_root) is not None or kaggle_ready()
    return False
