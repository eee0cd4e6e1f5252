"""The `vidhook` command: the processes (api, worker, simulator, dev) and operator commands.

The processes are configured only by environment variables (`vidhook api --help` lists
them); operator commands (`jobs`, `callbacks`, `keys`) need only REDIS_URL.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from pydantic import ValidationError

from service.logs import configure_logging, logging_config
from service.settings import Settings, describe_validation_error


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with one line per problem."""
    try:
        return Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")


def run_api() -> None:
    import uvicorn

    settings = load_settings()
    _configure_logging(settings)
    # Several processes need an import string for uvicorn to start the app in each; with one,
    # the app is built here so a configuration error shows before the port is bound.
    app: object = "service.app:app_from_environment"
    if settings.api_processes == 1:
        from service.app import create_app

        app = create_app(settings)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=settings.api_processes > 1,
        workers=settings.api_processes if settings.api_processes > 1 else None,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=logging_config(settings.log_level, json_lines=settings.log_format == "json"),
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        proxy_headers=False,
        server_header=False,
        # On SIGTERM uvicorn stops accepting and lets requests in flight (webhooks included)
        # finish for this long before it cancels them.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )


def _fresh_metrics_directory() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR before any metric exists (prometheus_client's rule).

    Only this container's processes write there, so files left by a previous run (a
    restarted container keeps its emptyDir) are stale by definition.
    """
    import shutil
    from pathlib import Path

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    shutil.rmtree(directory, ignore_errors=True)
    Path(directory).mkdir(parents=True, exist_ok=True)


def run_worker() -> None:
    import asyncio

    import uvloop

    from workers.main import create_worker

    settings = load_settings()
    _configure_logging(settings)
    asyncio.set_event_loop(uvloop.new_event_loop())
    create_worker(settings).run()


def run_simulator() -> None:
    from service.dev.simulator import SimulatorConfig, serve

    configure_logging(os.environ.get("LOG_LEVEL", "info"))
    try:
        config = SimulatorConfig()
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None
    serve(config)


def run_dev() -> None:
    from service.dev.devstack import run_dev_stack

    raise SystemExit(run_dev_stack())


def run_probe() -> None:
    """Exit 0 if this container's process answers on its port (the image's HEALTHCHECK).

    The role is the command PID 1 runs (`vidhook api|worker|simulator`), so one HEALTHCHECK
    fits all three: the API's /healthz, the worker's metrics port, the simulator's JWKS.
    """
    import urllib.request

    role = sys.argv[2] if len(sys.argv) > 2 else _container_role()
    port = {
        "api": os.environ.get("PORT", "8000"),
        "worker": os.environ.get("WORKER_METRICS_PORT", ""),
        "simulator": os.environ.get("SIMULATOR_PORT", "8100"),
    }.get(role, "")
    path = {"api": "/healthz", "worker": "/metrics", "simulator": "/.well-known/jwks.json"}
    if not port:
        raise SystemExit(0 if role == "worker" else 1)  # a worker without a metrics port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path[role]}", timeout=2):
            pass
    except OSError as exc:
        print(f"vidhook probe: {role} on :{port} does not answer: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _container_role() -> str:
    try:
        with open("/proc/1/cmdline", "rb") as cmdline:
            words = cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return "api"
    return next((word for word in words if word in ("api", "worker", "simulator")), "api")


PROCESSES = {
    "api": (run_api, "the HTTP API (intake, job reads, fal webhook receiver, /metrics)"),
    "worker": (run_worker, "the ARQ worker (dispatch to fal, client callbacks, reconcile)"),
    "simulator": (run_simulator, "a local stand-in for fal's queue API that renders real MP4s"),
    "dev": (run_dev, "everything above plus a private Redis, in one foreground process group"),
    "probe": (run_probe, "health check of this container's process (its image's HEALTHCHECK)"),
}


def _settings_epilog() -> str:
    lines = ["environment (see README.md, Configuration):"]
    for name, field in Settings.model_fields.items():
        required = " (required)" if field.is_required() else ""
        lines.append(f"  {name.upper()}{required}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from service.operator_cli import add_commands

    parser = argparse.ArgumentParser(
        prog="vidhook",
        description="Webhook-driven gateway to fal.ai's Veo video models. "
        "Configured by environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in PROCESSES.items():
        epilog = _settings_epilog() if name in ("api", "worker") else None
        commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    if (argv if argv is not None else sys.argv[1:])[:1] == ["probe"]:
        run_probe()  # before argparse: `vidhook probe [ROLE]` must stay cheap and tolerant
        return
    words = argv if argv is not None else sys.argv[1:]
    if words[:1] == ["api"]:
        # Before the parser: building it imports modules that create metrics.
        _fresh_metrics_directory()
    args = build_parser().parse_args(argv)
    if args.command in PROCESSES:
        PROCESSES[args.command][0]()
        return
    from service.operator_cli import OperatorSettings, run

    configure_logging(os.environ.get("LOG_LEVEL", "warning"))
    try:
        operator_settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(run(args, operator_settings))


if __name__ == "__main__":
    main()
