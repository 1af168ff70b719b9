"""Which of the pipeline's own source files each stage runs, for Make's prerequisites.

`makefile()` is a Makefile fragment, one variable per module:
`CODE.pipeline.modeling.train := pipeline/__init__.py pipeline/config.py ...`: the module and
every pipeline module it imports, directly or through others, at the top or inside a function.
Derived by reading the imports (ast), so a new import is a new prerequisite with no hand-kept list.
Standard library only: Make has it written while it parses (pipeline/makevars.py), before .venv exists.
"""

import ast
from pathlib import Path

PACKAGE = "pipeline"


def module_files(root: Path) -> dict[str, Path]:
    """{'pipeline.modeling.train': Path('pipeline/modeling/train.py'), ...}"""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path.relative_to(root)
    return found


def direct_imports(path: Path, name: str, known: dict) -> set[str]:
    """The package's modules that `path` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            # `import pipeline.modeling.train` also runs pipeline/__init__ and pipeline/modeling/__init__.
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    return found


def closure(root: Path) -> dict[str, list[str]]:
    known = module_files(root)
    direct = {name: direct_imports(path, name, known) for name, path in known.items()}
    result = {}
    for name in known:
        seen, todo = set(), [name, PACKAGE]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(direct[current])
        result[name] = sorted(str(known[m]) for m in seen)
    return result


def makefile(root: Path) -> str:
    return "".join(f"CODE.{name} := {' '.join(files)}\n" for name, files in sorted(closure(root).items()))
