import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_mypy_finds_nothing_in_the_layer_and_the_handlers():
    # Settings (files, strictness) live in pyproject.toml's [tool.mypy]; `make lint` runs the same check.
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_packages_agree_with_each_others_requirements():
    """pip check: a pin (or the venv's own pip) that breaks another package's requirement fails here, not at deploy."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
