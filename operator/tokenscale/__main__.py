"""``python -m tokenscale`` runs the command line."""

from tokenscale.cli.main import app

app()
