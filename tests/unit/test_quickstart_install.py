"""The quick start's installer choice (scripts/quickstart.py): uv first, pip when uv cannot be had or fails.

The commands are recorded instead of run (`_succeeds` replaced): what is
checked is which installer installs duro in each case, not the installers.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_under_test", REPO_ROOT / "scripts" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def venv_python(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.touch()
    return python


def _install(quickstart: ModuleType, python: Path, fails: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Runs `_install_duro` with commands that fail when their text contains one of `fails`; returns the commands."""
    commands: list[list[str]] = []
    uv = python.parent / "uv"

    def succeeds(command: list[str], log: io.StringIO) -> bool:
        commands.append(command)
        text = " ".join(command)
        if any(part in text for part in fails):
            return False
        if "uv>=" in text:
            uv.touch()  # installing uv puts it beside the venv's python
        return True

    monkeypatch.setattr(quickstart, "_succeeds", succeeds)
    quickstart._install_duro(python, io.StringIO(), python.parent / "install.log")
    return commands


def _installed_duro_with(commands: list[list[str]]) -> str:
    last = commands[-1]
    assert last[-2:] == ["-e", str(REPO_ROOT)], f"the last command must install duro, got {last}"
    return "uv" if Path(last[0]).name == "uv" else "pip"


def test_uv_installs_duro_once_it_could_be_fetched(venv_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quickstart = _load_quickstart()
    commands = _install(quickstart, venv_python, fails=(), monkeypatch=monkeypatch)
    assert _installed_duro_with(commands) == "uv"
    assert [sys.executable, "-m", "pip", "--python", str(venv_python)] == commands[1][:5], "uv comes through the running Python's pip"


def test_pip_installs_duro_when_uv_fails(venv_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As behind a proxy that re-signs TLS: uv (its own CA list) fails, pip (the system's) works."""
    quickstart = _load_quickstart()
    commands = _install(quickstart, venv_python, fails=("uv pip install",), monkeypatch=monkeypatch)
    assert _installed_duro_with(commands) == "pip"
    assert sum("-e" in command for command in commands) == 2, "uv tried first, then pip"


def test_pip_installs_duro_when_uv_cannot_be_had(venv_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quickstart = _load_quickstart()
    commands = _install(quickstart, venv_python, fails=("uv>=",), monkeypatch=monkeypatch)
    assert _installed_duro_with(commands) == "pip"
    assert not any(Path(command[0]).name == "uv" for command in commands)


def test_a_venv_pip_is_bootstrapped_when_the_running_python_has_none(venv_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quickstart = _load_quickstart()
    commands = _install(quickstart, venv_python, fails=(f"{sys.executable} -m pip",), monkeypatch=monkeypatch)
    assert [str(venv_python), "-m", "ensurepip", "--default-pip"] in commands
    assert _installed_duro_with(commands) == "uv"


def test_no_pip_at_all_is_a_clear_error(venv_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quickstart = _load_quickstart()
    with pytest.raises(quickstart.QuickstartError, match="install the python3-pip or python3-venv package"):
        _install(quickstart, venv_python, fails=(f"{sys.executable} -m pip", "ensurepip"), monkeypatch=monkeypatch)
