"""The layering of pyproject.toml's [tool.importlinter] contracts holds, and a breach is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """lint-imports on the project at `project`, importing its packages from there."""
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=project, env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_every_layering_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, contract", [
    ("ddpm_tui/tui/screens/runs.py", "the TUI reaches the store, the trainer and the processes through core.services"),
    ("ddpm_tui/cli/runs.py", "the CLI reaches the store, the runner and the trainer through core.services"),
])
def test_a_face_that_opens_the_store_itself_breaks_a_contract(tmp_path, module, contract):
    for name in ("core", "ddpm_tui", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    face = tmp_path / module
    face.write_text("from core.store import queries  # noqa\n" + face.read_text())
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert f"{contract} BROKEN" in result.stdout
    assert f"{module.removesuffix('.py').replace('/', '.')} -> core.store" in result.stdout
