"""``python -m ops``: the operator CLI."""

from ops.cli import cli

cli()
