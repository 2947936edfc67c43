"""What a new user reads first: `make help` and every command's --help at 80 columns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_prints_the_default_port_not_a_make_variable() -> None:
    """Issue 21: `make help` printed `localhost:$(PORT)`."""
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, check=True
    ).stdout
    assert "$(" not in out
    assert "serve predictions on localhost:3000" in out
