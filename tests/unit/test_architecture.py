"""Dependencies point one way: the import contracts in pyproject.toml ([tool.importlinter]) hold, and each of them
fails when a forbidden import is planted in a copy of the code."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["booking_api", "payment_fn", "replication_fn", "retry_fn", "accounts_fn", "maintenance_fn"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'layer'}"}
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--config",
                           str(root / "pyproject.toml")], cwd=root, env=env, capture_output=True, text=True)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """The code the contracts cover, copied so a violation can be planted without touching the real tree."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "layer" / "booking_core", tmp_path / "layer" / "booking_core", ignore=ignore)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    return tmp_path


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("layer/booking_core/services/decide.py", "from booking_core.adapters import kafka", "Layers"),
    ("layer/booking_core/adapters/mysql_retries.py", "from booking_core.services import retry", "Layers"),
    ("layer/booking_core/ports.py", "from booking_core import bootstrap", "Layers"),
    ("layer/booking_core/domain/model.py", "import redis", "The domain imports nothing"),
    ("layer/booking_core/domain/model.py", "from booking_core import config", "The domain imports nothing"),
    ("booking_api/app.py", "from booking_core.adapters import redis_client", "Entry points reach adapters"),
    ("layer/booking_core/config.py", "from booking_core.adapters import aws_secrets", "Utilities"),
], ids=["service->adapter", "adapter->service", "port->wiring", "domain->redis", "domain->config",
        "handler->adapter", "config->adapter"])
def test_a_planted_forbidden_import_breaks_its_contract(tree_copy, module, planted, contract):
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by the test\n")

    result = lint_imports(tree_copy)

    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout


HANDLERS = ["booking_api.app", "booking_api.listener", "payment_fn.app", "replication_fn.app", "retry_fn.app",
            "accounts_fn.app", "maintenance_fn.app"]


def test_the_layer_ships_only_what_a_handler_runs():
    """Every module of the layer is imported, directly or not, by one of the template's handlers: migrations,
    demo data and test hooks live in infra/ and tests/, not in what is deployed."""
    import grimp

    graph = grimp.build_graph("booking_core", *PACKAGES)
    used = set(HANDLERS).union(*(graph.find_upstream_modules(h) for h in HANDLERS))
    packages = {m for m in graph.modules if graph.find_children(m)}
    unused = {m for m in graph.modules if m.startswith("booking_core")} - used - packages
    assert unused == set()


def test_the_handlers_are_the_templates():
    from infra.local import template

    assert sorted(f.module_name for f in template.functions().values()) == sorted(HANDLERS)
