"""Which source the data stage takes, and whether the data in place is stale. Standard library only.

Sources, first that applies wins:
  1. DATA=<zip or folder in the competition layout> (a local download, ../shared/...),
     or DATA=kaggle for the Kaggle API explicitly;
  2. without DATA=, the source the data in place came from, if it was a local one;
  3. <kaggle root>/input/digit-recognizer (inside a Kaggle notebook);
  4. the Kaggle API, when credentials are configured;
  5. the small sample committed in data/sample/ (a demo, not the competition data).

`python -m pipeline.datasource [--data DATA]` prints `stale` when the data stage must run
although no file it depends on changed: nothing in place yet, a DATA= other than the one in
place, or demo data in place while a real source has appeared since (a notebook's input or
Kaggle credentials). Make asks this while it parses; it writes nothing, so a mistyped DATA=
leaves no trace once it has failed.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline import config
from pipeline.errors import PipelineError

API = "kaggle"  # DATA=kaggle: the Kaggle API, even when other data is in place


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


def choose_source(data: str | None, notebook_input: Path, kaggle_ready, recorded: dict | None = None) -> Source:
    """The first source that applies; `kaggle_ready()` is asked only when it comes to that."""
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
            raise PipelineError(f"the data in place came from {path}, which is gone: pass DATA=<competition zip or folder>")
        return Source("local", path)
    if notebook_input.is_dir():
        return Source("kaggle-notebook", notebook_input)
    if kaggle_ready():
        return Source("kaggle-api", None)
    return Source("sample", config.SAMPLE_ZIP)


def recorded_manifest(raw_dir: Path = config.RAW_DIR) -> dict | None:
    try:
        return json.loads((raw_dir / "source.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stale(data: str | None, manifest: dict | None, notebook_input: Path, kaggle_ready) -> bool:
    if manifest is None:
        return True
    if data:
        return requested(data) != manifest.get("request")
    if manifest.get("origin") == "sample":  # demo data: switch as soon as the real data can be had
        return notebook_input.is_dir() or kaggle_ready()
    return False


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="print 'stale' if the data stage must run")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    if stale(args.data, recorded_manifest(), config.KAGGLE_NOTEBOOK_INPUT, kaggle_ready):
        print("stale")
