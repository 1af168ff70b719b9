"""Stage 1, data: place the competition's three CSVs in data/raw/, validated.

The source is chosen by pipeline/datasource.py (DATA=, the source in place, a notebook's
input, the Kaggle API, the committed demo sample).

Everything is extracted and validated in a staging folder that replaces data/raw/ only when
all three files passed, so a bad download never overwrites good data. The validated arrays
are saved beside the CSVs (arrays.npz) so no later stage parses CSV again.
"""

import argparse
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline import config, csvcheck, provenance
from pipeline.datasource import Source, choose_source, kaggle_ready, recorded_manifest, stale
from pipeline.errors import PipelineError, cli
from pipeline.files import outputs, remove_dead_temporaries, replace_dir, save_npz, sha256_file, write_json


def safe_member(zip_path: Path, name: str) -> PurePosixPath:
    """Refuse archive paths that would land outside the target folder."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise PipelineError(f"{zip_path}: refused: member '{name}' would be written outside the target folder")
    return p


def competition_members(members: dict) -> dict:
    """The three files by name: at the top of the zip, or all in one folder (a re-zipped download)."""
    for folder in sorted({p.parent for p in members}, key=lambda p: len(p.parts)):
        found = {p.name: info for p, info in members.items() if p.parent == folder and p.name in config.RAW_FILES}
        if len(found) == len(config.RAW_FILES):
            return found
    return {p.name: info for p, info in members.items() if len(p.parts) == 1}


def extract_competition_zip(zip_path: Path, dest: Path) -> None:
    """Extract train.csv, test.csv and sample_submission.csv (at the top or in one folder) into dest."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {safe_member(zip_path, info.filename): info for info in zf.infolist()}
            by_name = competition_members(members)
            for name in config.RAW_FILES:
                if name not in by_name:
                    found = ", ".join(sorted(str(p) for p in members if not p.name.startswith("."))) or "nothing"
                    raise PipelineError(f"{zip_path}: no {name} in the zip (found: {found[:200]})")
            for name in config.RAW_FILES:
                with zf.open(by_name[name]) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise PipelineError(
            f"{zip_path}: not a readable zip file ({exc}; truncated?): DATA takes the competition "
            "zip, or a folder holding train.csv, test.csv and sample_submission.csv"
        ) from None
    except (EOFError, zlib.error) as exc:
        raise PipelineError(f"{zip_path}: truncated or corrupt zip: {exc}") from None
    except OSError as exc:
        raise PipelineError(f"cannot extract {zip_path}: {exc.strerror or exc}") from None


def copy_competition_folder(folder: Path, dest: Path) -> None:
    for name in config.RAW_FILES:
        src = folder / name
        if not src.is_file():
            raise PipelineError(f"{folder}: no {name} in this folder")
        try:
            shutil.copyfile(src, dest / name)
        except OSError as exc:
            raise PipelineError(f"cannot copy {src}: {exc.strerror}") from None


def fetch(source: Source, dest: Path, force: bool) -> Path | None:
    """Put the three raw files in dest; returns the zip they came from, if any."""
    path = source.path
    if source.origin == "kaggle-api":
        from pipeline.kaggle import client as kaggle_client

        path = kaggle_client.download_competition(config.DOWNLOAD_DIR, force=force)
    if path.is_dir():
        copy_competition_folder(path, dest)
        return None
    extract_competition_zip(path, dest)
    return path


def validate(folder: Path) -> dict:
    """Parse and check the three files; returns the arrays (uint8) for arrays.npz."""
    train_pixels, labels = csvcheck.read_train(folder / "train.csv")
    test_pixels = csvcheck.read_test(folder / "test.csv")
    csvcheck.read_submission(folder / "sample_submission.csv", n_expected=len(test_pixels))
    return {"train_pixels": train_pixels, "train_labels": labels, "test_pixels": test_pixels}


def acquire(source: Source, raw_dir: Path, force: bool = False) -> dict:
    """Fetch, validate and atomically install the competition files; returns the manifest."""
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(raw_dir.parent)  # the staging folder of a run that was killed
    staging = Path(tempfile.mkdtemp(dir=raw_dir.parent, prefix=f".{raw_dir.name}.{os.getpid()}."))
    try:
        zip_path = fetch(source, staging, force)
        arrays = validate(staging)
        save_npz(staging / "arrays.npz", **arrays)
        sha256 = {name: sha256_file(staging / name) for name in config.RAW_FILES}
        manifest = {
            "origin": source.origin,
            "path": str(zip_path or source.path),
            "request": source.request,  # what DATA= asked for (see datasource.stale)
            "from_kaggle": source.from_kaggle,  # the competition's own test set: its predictions may be uploaded
            "rows": {"train": len(arrays["train_labels"]), "test": len(arrays["test_pixels"])},
            "sha256": sha256,  # the data's identity (provenance)
            "outputs": sha256 | outputs(staging, ["arrays.npz"]),  # what later stages check before use
            "run": provenance.run(),
        }
        write_json(staging / "source.json", manifest)
        replace_dir(staging, raw_dir)
        return manifest
    except csvcheck.CsvError as exc:
        # Name the file the user gave, not our staging copy.
        raise PipelineError(str(exc).replace(str(staging), str(source.path or "kaggle download"))) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def describe(manifest: dict) -> str:
    rows = manifest["rows"]
    where = {
        "local": f"local {manifest['path']}",
        "kaggle-notebook": f"Kaggle notebook input {manifest['path']}",
        "kaggle-api": f"the Kaggle API ({manifest['path']})",
        "sample": f"the committed sample {manifest['path']}",
    }
    return f"data/raw: {rows['train']:,} train and {rows['test']:,} test rows from {where[manifest['origin']]}"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a zip or folder in the competition layout, or 'kaggle' for the API")
    ap.add_argument("--force", action="store_true", help="download again even if a valid copy is present")
    args = ap.parse_args(argv)
    if (
        os.environ.get("PIPELINE_ONLY_FORCED")
        and not args.force
        and not stale(args.data, recorded_manifest(), config.KAGGLE_INPUT, kaggle_ready)
    ):
        print(f"{config.RAW_DIR} is up to date: another run placed this data while this one waited")
        return
    source = choose_source(args.data, config.KAGGLE_INPUT, kaggle_ready, recorded_manifest(), config.IN_NOTEBOOK)
    manifest = acquire(source, config.RAW_DIR, force=args.force)
    print(describe(manifest))
    if source.origin == "sample":
        print(
            "notice: no DATA=, no Kaggle notebook input and no Kaggle credentials, so this is the small DEMO sample "
            "committed in the repo, not the competition data; configure Kaggle credentials (the next make switches "
            "to the competition's files by itself) or pass DATA=<competition zip>."
        )


if __name__ == "__main__":
    main()
