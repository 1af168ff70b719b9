"""What the pipeline needs installed: the venv's dependencies, and notebook mode's package check.

Outside a notebook, `make` builds .venv from `--requirements` (pyproject.toml's dependencies, not
the project itself). Inside a Kaggle notebook there is no venv and usually no internet, and pip
would replace the notebook's GPU builds of TensorFlow/JAX with CPU wheels. So nothing is installed:
every package the pipeline needs must be importable (else one line naming it, exit 2), and versions
other than pyproject.toml's pins get one warning line. Standard library only.
"""

import re
import sys
import tomllib
from importlib import metadata

from pipeline import config
from pipeline.errors import PipelineError, cli

# Pinned in pyproject.toml but not needed in a notebook: the data comes from /kaggle/input, the
# upload happens outside, and TensorBoard logging is skipped where TensorFlow is absent.
# py-cpuinfo: /proc/cpuinfo stands in; ml_dtypes: pinned for its import time (pyproject.toml), any JAX takes.
NOT_NEEDED = {"kaggle", "tensorboard", "tensorflow", "py-cpuinfo", "ml_dtypes"}
# A Keras backend, one of which must be there.
BACKENDS = ("jax", "tensorflow", "torch")


def requirements(extras: list[str]) -> list[str]:
    """pyproject.toml's dependencies and those of `extras`, as pip takes them: what the venv needs
    from the project. The project itself is not installed: every command runs from the checkout
    (`python -m pipeline...`), so an installed copy could only go stale."""
    with open(config.PYPROJECT, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise PipelineError(
            f"EXTRAS={','.join(extras)}: {', '.join(unknown)} is not in pyproject.toml's "
            f"optional-dependencies ({', '.join(optional)})"
        )
    return [spec.split("#")[0].strip() for spec in project["dependencies"] + [d for e in extras for d in optional[e]]]


def pins() -> dict[str, str]:
    """{'numpy': '2.4.6', ...} from pyproject.toml's dependencies."""
    with open(config.PYPROJECT, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    found = {}
    for spec in deps:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)\s*", spec.split("#")[0])
        if m:
            found[m[1].lower()] = m[2]
    return found


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check() -> list[str]:
    """Raise naming the first missing package; return (package, found, pinned) differences."""
    needed = {name: version for name, version in pins().items() if name not in NOT_NEEDED}
    for name in needed:
        if installed(name) is None:
            raise PipelineError(
                f"package {name} is not installed in {sys.executable} (pinned: {name}=={needed[name]}); "
                "notebook mode installs nothing: add it to the notebook's environment"
            )
    if not any(installed(b) for b in BACKENDS):
        raise PipelineError(f"no Keras backend is installed in {sys.executable}: need one of {', '.join(BACKENDS)}")
    return [
        f"{name} {installed(name)} (pinned {version})" for name, version in needed.items() if installed(name) != version
    ]


@cli
def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--requirements",
        metavar="EXTRAS",
        help="print the dependencies (and those of EXTRAS, "
        "comma-separated) one per line, for pip, instead of checking the installed packages",
    )
    args = ap.parse_args(argv)
    if args.requirements is not None:
        print("\n".join(requirements([e for e in args.requirements.split(",") if e.strip()])))
        return
    differ = check()
    if differ:
        print(f"warning: using the notebook's packages, which differ from the pins: {', '.join(differ)}")


if __name__ == "__main__":
    main()
