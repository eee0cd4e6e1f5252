"""The `vidhook` command: api, worker, simulator, dev. Configured only by environment variables."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys

from pydantic import ValidationError

from service.settings import Settings, describe_validation_error


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with one line per problem."""
    try:
        return Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def run_api() -> None:
    import uvicorn

    from service.app import create_app

    settings = load_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        access_log=os.environ.get("ACCESS_LOG", "false").lower() == "true",
        proxy_headers=False,
        # On SIGTERM uvicorn stops accepting and lets requests in flight (webhooks included)
        # finish for this long before it cancels them.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )


def run_worker() -> None:
    import asyncio

    import uvloop

    from workers.main import create_worker

    settings = load_settings()
    asyncio.set_event_loop(uvloop.new_event_loop())
    create_worker(settings).run()


def run_simulator() -> None:
    from service.dev.simulator import SimulatorConfig, serve

    try:
        config = SimulatorConfig()
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None
    serve(config)


def run_dev() -> None:
    from service.dev.devstack import run_dev_stack

    raise SystemExit(run_dev_stack())


COMMANDS = {
    "api": (run_api, "the HTTP API (intake, job reads, fal webhook receiver)"),
    "worker": (run_worker, "the ARQ worker (dispatch to fal, client callbacks)"),
    "simulator": (run_simulator, "a local stand-in for fal's queue API that renders real MP4s"),
    "dev": (run_dev, "everything above plus a private Redis, in one foreground process group"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vidhook",
        description="Webhook-driven gateway to fal.ai's Veo video models. "
        "Configured by environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO; submit URLs carry the per-job webhook token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    COMMANDS[args.command][0]()


if __name__ == "__main__":
    main()
