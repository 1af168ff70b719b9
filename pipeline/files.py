"""Writing files so that a crash, a full disk or a kill never leaves a half-written output, and
reading them only when they are what their stage recorded.

Every file goes to a temporary name beside it and is renamed into place. Each stage ends by writing
its manifest, the file Make tracks (source.json, features.json, metrics.json), with the sha256 of
every other file it wrote ("outputs"). A kill before the manifest leaves the stage out of date, so
Make reruns it; after, every output is in place. Readers check a file against the manifest that
lists it (`verify`): one that is truncated, altered or unrecorded is set aside, its stage marked out
of date, and named in one line, so the same make command rebuilds it.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError

# The crash tests' seam (tests/test_crash.py), inert unless set: PIPELINE_CRASH_AT=n makes the
# process SIGKILL itself at its n-th write event, PIPELINE_CRASH_LOG=file lists the events, both
# only in the stage PIPELINE_CRASH_IN names (a module: pipeline.features).
_crash = {"events": 0}


def crash_point(event: str) -> None:
    at, log = os.environ.get("PIPELINE_CRASH_AT"), os.environ.get("PIPELINE_CRASH_LOG")
    if not (at or log):
        return
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(main, "name", None) != os.environ.get("PIPELINE_CRASH_IN"):
        return
    _crash["events"] += 1
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{event}\n")
    if at and _crash["events"] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    `suffix` is for writers that insist on an extension (Keras saves only to `*.keras`).

    On any failure the temporary file is removed and the old `path`, if any, stays intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=suffix)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.close(fd)
    except OSError as exc:
        raise PipelineError(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(tmp)
    try:
        crash_point(f"open {path.name}")
        yield tmp
        crash_point(f"written {path.name}")
        os.replace(tmp, path)
        crash_point(f"renamed {path.name}")
    except OSError as exc:
        raise PipelineError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Delete what killed writers left in `folder`: temporary files and staging folders named
    `.<name>.<pid>.<random>...` whose process is gone. Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = re.fullmatch(r"\.(.+)\.(\d+)\.[A-Za-z0-9_]+(\.tmp|\.keras)?", entry.name)
        if m and int(m[2]) != os.getpid() and not _alive(int(m[2])):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_json_if_changed(path: Path, obj) -> bool:
    """Rewrite `path` only when its content would change, so Make sees an unchanged mtime."""
    text = json.dumps(obj, indent=2) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run the stage that makes it first") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is not readable JSON: {exc}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written `staging` folder in for `target` (two renames, no copying)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    try:
        if target.exists():
            os.replace(target, old)
            crash_point(f"half-swapped {target.name}")
        os.replace(staging, target)
        crash_point(f"swapped {target.name}")
    except OSError as exc:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise PipelineError(f"cannot replace {target}: {exc.strerror}") from None
    shutil.rmtree(old, ignore_errors=True)


def save_npz(path, **arrays) -> None:
    """np.savez's format, byte for byte the same for the same arrays: np.savez stamps each member
    with the time it was written, so a rebuilt file would differ from the one it replaces."""
    import zipfile

    import numpy as np  # here, not at the top: Make imports this module before .venv exists

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, array in arrays.items():
                    member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    with zf.open(member, "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())


def load_npz(path, verify_first: bool = True) -> dict:
    """The arrays of an .npz the pipeline wrote, checked against its manifest first."""
    import numpy as np

    if verify_first and Path(path).is_file():
        verify(path)
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise PipelineError(
            f"{path} is missing: run the stage that makes it first (`make data`, `make train`, ...)"
        ) from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is unreadable ({exc}): delete it and rerun make") from None


# ---------------------------------------------------------------- manifests: what each stage wrote
# The files a stage writes last, each recording the sha256 of the files beside it (or below it).
MANIFESTS = ("metrics.json", "features.json", "source.json")
# How far up from a file its manifest may sit (models/<m>/cv/fold-k/member-i/model.keras: two).
MANIFEST_DEPTH = 3


def outputs(folder: Path, names) -> dict[str, str]:
    """{name: sha256} of files in `folder` (names relative to it), for a manifest's "outputs"."""
    return {str(name): sha256_file(Path(folder) / name) for name in names}


def shown(path: Path, base: Path | None = None) -> str:
    """A path as a user would type it: relative to `base` (default: the current folder, where Make
    runs) when inside it, else as given. Not resolved: .venv/bin/python is a link."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(base) if base is not None else None)
    return str(path) if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def read_manifest(path: Path) -> dict:
    """A stage's manifest; an unreadable one is set aside (its stage reruns) and named in one line."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except FileNotFoundError:
        raise PipelineError(f"{shown(path)} is missing: run the stage that makes it first") from None
    except (OSError, ValueError) as exc:
        damaged(path, None, f"unreadable: {str(exc)[:80]}")


def recorded(path: Path) -> tuple[str | None, Path | None]:
    """(sha256 recorded for `path`, the manifest that records it); (None, None) if none does."""
    path = Path(path).resolve()
    folder = path.parent
    for _ in range(MANIFEST_DEPTH):
        for name in MANIFESTS:
            manifest = folder / name
            if manifest != path and manifest.is_file():
                sha = read_manifest(manifest).get("outputs", {}).get(path.relative_to(folder).as_posix())
                if sha:
                    return sha, manifest
        folder = folder.parent
    return None, None


def verify(path: Path) -> None:
    """Raise (one line) unless `path` is byte for byte what the stage that wrote it recorded."""
    expected, manifest = recorded(path)
    if expected is None:
        damaged(path, None, "no stage's manifest records it")
    actual = sha256_file(path)
    if actual != expected:
        size = Path(path).stat().st_size
        damaged(
            path,
            manifest,
            f"{size:,} bytes whose sha256 {actual[:12]} is not the {expected[:12]} {shown(manifest)} recorded",
        )


def damaged(path: Path, manifest: Path | None, why: str):
    """Set a damaged file aside and mark its stage out of date (its manifest's mtime to 0, so Make
    rebuilds it), then raise the one line that names it."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
        if manifest is not None:
            os.utime(manifest, (0, 0))
        done = f"set aside as {aside.name} and its stage marked out of date"
    except OSError as exc:
        done = f"could not set it aside ({exc.strerror}): delete it"
    raise PipelineError(f"{shown(path)} is damaged ({why}); {done}: rerun the same make command to rebuild it")
