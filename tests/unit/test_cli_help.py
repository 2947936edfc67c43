"""What a new user reads first: `make help` and every command's --help at 80 columns."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from training.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_prints_the_default_port_not_a_make_variable() -> None:
    """Issue 21: `make help` printed `localhost:$(PORT)`."""
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, check=True
    ).stdout
    assert "$(" not in out
    assert "serve predictions on localhost:3000" in out


def _commands() -> list[tuple[list[str], Any]]:
    """The app and each command, as typer builds them (on its own copy of click)."""
    root = typer.main.get_command(app)
    return [([], root), *(([name], cmd) for name, cmd in root.commands.items())]


@pytest.mark.parametrize(
    ("args", "command"), _commands(), ids=[" ".join(a) or "pe-risk" for a, _ in _commands()]
)
def test_help_at_80_columns_shows_every_option_whole(args: list[str], command: Any) -> None:
    """Issue 21: at 80 columns `pe-risk train --help` cut option names (--missing-max-int…),
    gave every flag a <bool> metavar and wrapped its help a few words a line; the command
    list cut every summary mid-sentence."""
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(opt)}(\s|,|$)", res.output), opt
    assert "<bool>" not in res.output and "BOOLEAN" not in res.output
    assert "…" not in res.output  # rich's mark of a cut name or text
    if hasattr(command, "commands"):  # each command's summary, whole, on one line
        for name in command.commands:
            (line,) = [ln for ln in lines if ln.startswith(f"  {name} ")]
            assert line.rstrip().endswith(".") and not line.endswith("..."), line
