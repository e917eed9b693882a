"""The folders are layers: every import points down, so no package imports one that imports it.

schemas (the contract) < partners (what each partner accepts, how its requests are built)
< core (settings, errors, Kafka admin, routing, config view) < the three processes: streams
(worker), sinks (sink runner), control (API and client CLI), which never import each other
< forwarder (the one command). devtools, benchmarks and tests sit on top and ship nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "partners": {"schemas"},
    "core": {"schemas", "partners"},
    "streams": {"schemas", "partners", "core"},
    "sinks": {"schemas", "partners", "core"},
    "control": {"schemas", "partners", "core"},
    "forwarder": {"schemas", "partners", "core", "streams", "sinks", "control"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_import_points_down() -> None:
    ours = set(ALLOWED) | {"devtools", "benchmarks", "tests"}
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for target in imported_packages(path) & ours:
                if target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(REPO)} imports {target}")
    assert wrong == []


def test_shipped_packages_are_the_layers() -> None:
    """devtools (local drivers for the demo, tests and benchmarks) is not installed."""
    pyproject = (REPO / "pyproject.toml").read_text()
    include = next(line for line in pyproject.splitlines() if line.startswith("include = "))
    shipped = {name.strip(' "*') for name in include.split("=", 1)[1].strip(" []").split(",")}
    assert shipped == set(ALLOWED)


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "routing.py"
    module.write_text("from streams.app import Forwarder\nimport control.api\n")
    assert imported_packages(module) == {"streams", "control"}


def test_the_image_ships_every_layer() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert all(f"COPY {package} {package}" in dockerfile for package in ALLOWED)
