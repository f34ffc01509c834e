"""Every third-party module Kantoor's code imports is a declared install requirement (setup.cfg), so the README's
first command (``pip install -e .`` then ``kantoor serve``) works on a fresh machine: the test command installs
the test extras too, which once hid a module only they brought (recurring_ical_events, through caldav)."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    return {_canonical(re.split(r"[\s\[<>=!~;]", line.strip(), maxsplit=1)[0]) for line in lines if line.strip()}


def _imported_modules() -> dict[str, str]:
    """Top-level module → one file importing it, for every absolute import in kantoor/ (function-level ones too)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "kantoor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_third_party_module_is_an_install_requirement() -> None:
    declared = _declared()
    distributions = packages_distributions()
    missing = []
    for module, where in _imported_modules().items():
        if module == "kantoor" or module in sys.stdlib_module_names:
            continue
        providers = {_canonical(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported in {where}) is not installed at all"
        if not providers & declared:
            missing.append(f"{module} ({where}; from {', '.join(sorted(providers))})")
    assert not missing, "imported but not in setup.cfg's install_requires: " + "; ".join(missing)
