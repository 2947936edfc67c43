"""The ``pe-risk`` command line, composed here: the data commands (``training.data_cli``),
the model commands (``training.model_cli``) and the serving commands (``serving.cli``).

This is the one place where training meets serving: ``serve`` gets the plain training
function that makes a champion when there is none (``training.track.ensure_champion``).
Every command takes its paths from options, its defaults from ``models.settings``, and
exits non-zero with a message that says what to fix.
"""

from __future__ import annotations

import typer

from serving import cli as serving_cli
from training import data_cli, model_cli
from training.track import ensure_champion

app = typer.Typer(
    name="pe-risk",
    help="Pulmonary-embolism risk in lung cancer: validate records, derive predictors and "
    "clinical scores, make the synthetic cohort, train and serve the model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's own help layout: rich's boxed table truncated option names and wrapped the
    # help text a few words a line at 80 columns, and typer's rich help gives flags <bool>
    rich_markup_mode=None,
)
data_cli.register(app)
model_cli.register(app)
serving_cli.register(app, ensure_champion)

if __name__ == "__main__":
    app()
