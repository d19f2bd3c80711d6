"""scripts/setup.sh says what it is doing, a line per step, before each slow step (stubbed pip and python)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_prints_a_line_per_step(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "setup.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # python: the torch version check fails (torch not installed yet); everything else works
    (bin_dir / "python").write_text('#!/bin/sh\ncase "$*" in *"sys.exit(torch"*) exit 1;; *"print(torch"*) echo 2.13.0;; esac\nexit 0\n')
    (bin_dir / "pip").write_text("#!/bin/sh\nexit 0\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    steps = result.stderr.splitlines()
    assert [line.split(" ")[1] for line in steps] == ["installing", "installing", "checking"], steps
    assert "torch 2.13.0" in steps[0] and "~40 s" in steps[2]
    assert result.stdout.strip() == "setup: ready (.venv, torch 2.13.0)"
