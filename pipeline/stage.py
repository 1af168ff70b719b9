"""One writer per output: how Make runs a stage.

    python -m pipeline.stage TARGET -m MODULE [ARGS...]      (the Makefile's $(STAGE))

Make passes the rule's target and, in STAGE_DEPS, its prerequisites. This module

1. takes an exclusive lock on TARGET and a shared lock on each prerequisite that another stage
   writes (flock on files under <out>/.make/locks/), so no two runs write one output at once and
   no run reads an output while another rewrites it. A run that must wait says so in one line (who
   holds it, since when), or with WAIT=0 (PIPELINE_WAIT=0) refuses in one line instead. An OS lock
   is released when its process ends, however it ends: a killed run never leaves a lock behind;
2. does nothing if TARGET is now newer than every prerequisite: another run made it since Make
   looked (Make's own rule, applied again once the lock is ours);
3. otherwise prints the command, as Make would, and runs MODULE in this process (so the locks die
   with it), exiting with its status.

Locks are per target: `make cv` trains two folds side by side. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import runpy
import shlex
import sys
import time
from pathlib import Path

from pipeline import config, files
from pipeline.errors import PipelineError

LOCKS = config.STATE_DIR / "locks"
FORCE = "FORCE"  # the Makefile's phony prerequisite that makes a rule always run


def lock_file(target: Path) -> Path:
    """<out>/.make/locks/models%conv_gru%metrics.json.lock for <out>/models/conv_gru/metrics.json."""
    try:
        name = Path(target).resolve().relative_to(config.OUT).as_posix()
    except ValueError:
        name = Path(target).resolve().as_posix().lstrip("/")
    return LOCKS / (name.replace("/", "%") + ".lock")


def _user_make() -> tuple[str, int, int] | None:
    """(the `make ...` command line this stage runs under, its pid, its start in clock ticks after boot) of
    the user's make: the top of the makes above us (MAKELEVEL of them; `make cv` trains its folds in a make
    of its own). None outside make, or where /proc cannot say."""
    pid, makes, found = os.getppid(), int(os.environ.get("MAKELEVEL") or 1), None
    for _ in range(4 * makes):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            break
        words = [w.decode(errors="replace") for w in words if w]
        if words and Path(words[0]).name in ("make", "gmake"):
            # Never a secret given on the command line (KAGGLE_KEY=...): these lines are printed and saved.
            shown = [re.sub(r"^([^=]*(KEY|TOKEN|SECRET|PASSWORD)[^=]*=).+", r"\1***", w, flags=re.I) for w in words[1:]]
            found, makes = (shlex.join(["make", *shown]), pid, int(stat[19])), makes - 1  # stat's field 22: start
            if makes == 0:
                break
        pid = int(stat[1])  # the parent's parent
    return found


def _make_process() -> tuple[str, str]:
    """(the user's make command line, an id of that make run: its pid and start time); this process's own
    when there is no make."""
    found = _user_make()
    if found is None:
        return shlex.join(sys.argv), f"{os.getpid()}-{time.time():.0f}"
    command, pid, ticks = found
    return command, f"{pid}-{ticks}"


def make_started() -> float | None:
    """When the user's make began, in seconds since the epoch (its start after boot plus /proc/stat's boot
    time): what a budget counts from, the venv and the data stage included. None outside make."""
    found = _user_make()
    if found is None:
        return None
    btime = re.search(r"^btime (\d+)", Path("/proc/stat").read_text(), re.M)
    return int(btime[1]) + found[2] / os.sysconf("SC_CLK_TCK")


def make_command() -> str:
    """The `make ...` command line this process runs under (its own command line outside make)."""
    return _make_process()[0]


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
        return f"`{info['command']}` (pid {info['pid']}) has been {info['doing']} it since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run holds it"


def lock(path: Path, exclusive: bool, wait: bool) -> tuple[int, bool]:
    """(file descriptor holding the lock, whether we had to wait for it)."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT, 0o666)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        waited = False
    except BlockingIOError:
        holder = _holder(fd)
        if not wait:
            os.close(fd)
            raise PipelineError(
                f"{files.shown(path)} is being written by another run: {holder}; not waiting (WAIT=0): "
                "rerun when it is done"
            ) from None
        print(f"waiting for {files.shown(path)}: {holder}", flush=True)
        fcntl.flock(fd, mode)
        waited = True
    # Who holds it, for the next run's waiting line (readers share a lock: the last one to come says).
    info = {
        "pid": os.getpid(),
        "command": make_command(),
        "since": time.time(),
        "doing": "writing" if exclusive else "reading",
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd, waited


def is_fresh(target: Path, deps: list[Path]) -> bool:
    """Make's rule: the target exists and no prerequisite is newer (FORCE, Make's always-run
    prerequisite, and `make -B` make nothing fresh)."""
    if FORCE in map(str, deps) or "B" in os.environ.get("MAKEFLAGS", "").split(" ")[0].lstrip("-"):
        return False
    try:
        made = target.stat().st_mtime
    except FileNotFoundError:
        return False
    return all(not d.exists() or d.stat().st_mtime <= made for d in deps)


def is_output(path: Path) -> bool:
    """A file some stage writes (under the output root's data, models or submissions)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(d) for d in (config.DATA_DIR, config.MODELS_DIR, config.SUBMISSIONS_DIR))


@contextlib.contextmanager
def locked(target: Path, deps: list[Path], wait: bool = True):
    """Hold the target's lock and shared locks on its stage-written prerequisites; yields (whether
    the target is up to date now, whether we had to wait)."""
    fds, waited = [], False
    try:
        for dep in sorted({d for d in deps if str(d) != FORCE and is_output(d)} - {target}):
            fd, w = lock(dep, exclusive=False, wait=wait)
            fds.append(fd)
            waited |= w
        fd, w = lock(target, exclusive=True, wait=wait)
        fds.append(fd)
        yield is_fresh(target, deps), waited or w
    finally:
        for fd in fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit("usage: python -m pipeline.stage TARGET -m MODULE [ARGS...]  (prerequisites in STAGE_DEPS)")
    target, module, args = Path(argv[0]), argv[2], argv[3:]
    deps = [Path(d) for d in os.environ.get("STAGE_DEPS", "").split()]
    wait = os.environ.get("PIPELINE_WAIT", "1").strip().lower() not in ("0", "no", "false")
    try:
        with locked(target, deps, wait) as (fresh, waited):
            if fresh:  # Make saw it out of date; since then another run made it
                print(
                    f"{files.shown(target)} is up to date: "
                    f"{'the run this one waited for' if waited else 'another run'} made it",
                    flush=True,
                )
                return
            files.remove_dead_temporaries(target.parent)  # a killed run's half-written files
            real = [d for d in deps if str(d) != FORCE]
            if len(real) < len(deps) and is_fresh(target, real):
                # Only FORCE asked for it (the data stage when the data in place looked stale as
                # Make parsed): the stage may find that another run has since made it current.
                os.environ["PIPELINE_ONLY_FORCED"] = "1"
            print(shlex.join([files.shown(Path(sys.executable)), "-m", module, *args]), flush=True)
            command, run_id = _make_process()
            os.environ.update(PIPELINE_COMMAND=command, PIPELINE_RUN_ID=run_id, PIPELINE_STAGE_STARTED=str(time.time()))
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
