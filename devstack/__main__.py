"""``python -m devstack run|demo``: the local stack (and the processes it is made of)."""

from __future__ import annotations

import sys

import click


def _log_to_stdout() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # botocore's INFO lines (where it found credentials and endpoints) say nothing about the product.
    logging.getLogger("botocore").setLevel(logging.WARNING)


@click.group()
def main() -> None:
    """The product on one machine: AWS emulated, the API, Lambda's event sources and an Alipay sandbox."""


@main.command()
def run() -> None:
    """Start the local stack in the foreground (make run); Ctrl-C stops it."""
    from devstack.stack import run as run_stack

    sys.exit(run_stack())


@main.command()
def demo() -> None:
    """Start a local stack on free ports, pay one order through it, print the lifecycle, stop it (make demo)."""
    from devstack.demo import main as run_demo

    sys.exit(run_demo())


@main.command(hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
def emulator(host: str, port: int) -> None:
    """The AWS emulator (moto server), as the stack starts it."""
    from devstack.emulator import serve

    serve(host, port)


@main.command(hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--stack-file", type=click.Path(exists=True, dir_okay=False), required=True)
def api(host: str, port: int, concurrency: int, stack_file: str) -> None:
    """The API: the Chalice app behind emulated API Gateway and its authorizers, as the stack starts it."""
    _log_to_stdout()
    from devstack.api_server import serve

    serve(host, port, concurrency, stack_file)


@main.command(hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--state-dir", type=click.Path(exists=True, file_okay=False), required=True)
def identity(host: str, port: int, state_dir: str) -> None:
    """The local identity provider standing in for the Cognito user pool, as the stack starts it."""
    _log_to_stdout()
    from pathlib import Path

    from devstack.identity import serve
    from devstack.resources import read_stack_file

    stack = read_stack_file(Path(state_dir))
    serve(host, port, Path(state_dir), stack["identity_issuer"], stack["cognito_client_id"])


@main.command(hidden=True)
@click.argument("kind", type=click.Choice(["sqs", "stream", "schedule"]))
def worker(kind: str) -> None:
    """One emulated event-source mapping, as the stack starts it."""
    _log_to_stdout()
    from devstack.workers import serve

    serve(kind)


if __name__ == "__main__":
    main()
