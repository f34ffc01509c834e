"""Run the benchmarked Kantoor from another source tree than the installed one.

``kantoor_process`` starts ``python -m kantoor`` with this process's environment and working
directory. Putting a tree (e.g. ``git archive <commit> kantoor | tar -x -C DIR``) first on
PYTHONPATH and leaving a working directory that holds a ``kantoor/`` package makes the child
(and the ``kantoor user add`` calls) import that tree: measure a commit while the working
tree is being edited, or compare two commits with the same script.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def use_tree(tree: str) -> str:
    """Make Kantoor processes started from now on import ``tree``; returns the resolved path."""
    root = Path(tree).resolve()
    if not (root / "kantoor" / "__main__.py").exists():
        raise SystemExit(f"--kantoor-tree {tree}: no kantoor/__main__.py there")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    os.chdir(tempfile.gettempdir())  # python -m puts the working directory first on sys.path
    return str(root)
