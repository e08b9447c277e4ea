"""ruff and mypy stay clean: part of the suite, so CI enforces them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy", "monitor"]])
def test_clean(command):
    tool = Path(sys.executable).parent / command[0]
    if not tool.exists() and shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(tool) if tool.exists() else command[0], *command[1:]], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
