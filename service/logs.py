"""One log format for every process: a JSON object per line, rendered by structlog.

vidhook's own modules log through the standard library (`logging.getLogger("vidhook.…")`)
and pass their fields with `extra=` (`job_id`, `fal_request_id`, `tenant`, `duration_s`), so
a record is the same whether or not this configuration is installed (tests, libraries).
uvicorn's and ARQ's records go through the same root handler and the same renderer.

Never logged: API keys, secrets, webhook tokens, data URIs. Callers keep them out of their
messages; uvicorn's access lines name the request path, so their `token=` values are masked
here (the one place a token can reach a log without our code writing it).
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

import structlog
from structlog.types import EventDict, Processor

# Query values that authenticate a request: fal webhook URLs carry `token=`, and a submit's
# `fal_webhook=` carries such a URL, percent-encoded.
_TOKEN_QUERY = re.compile(r"((?:[?&]|%3F|%26)(?:token|fal_webhook)(?:=|%3D))[^&\s\"']*", re.I)
# Loggers whose lines are too chatty for production (httpx logs every URL at INFO, and submit
# URLs carry the per-job webhook token).
_QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING}


def mask_tokens(text: str) -> str:
    """`text` with the value of every `token=` query parameter replaced by `***`."""
    return _TOKEN_QUERY.sub(r"\1***", text)


def _mask_access_line(logger: Any, method: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    record = event.get("_record")
    if isinstance(record, logging.LogRecord) and record.name == "uvicorn.access":
        event["event"] = mask_tokens(str(event.get("event", "")))
    return event


def formatter(*, json_lines: bool = True) -> logging.Formatter:
    """The formatter every handler of a vidhook process uses (also the tests' capture)."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        # Fields passed with `extra=`; the standard attributes of a LogRecord stay out.
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            _mask_access_line,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def logging_config(level: str = "info", *, json_lines: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: one stderr handler on the root, our format.

    Given to uvicorn as its `log_config`, so that every uvicorn worker process (which
    configures logging afresh) logs the same way; uvicorn's and ARQ's loggers lose their own
    handlers and propagate to the root.
    """
    libraries = {
        name: {"handlers": [], "propagate": True}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq")
    }
    quiet = {name: {"level": logging.getLevelName(lvl)} for name, lvl in _QUIET_LOGGERS.items()}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vidhook": {"()": formatter, "json_lines": json_lines}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "vidhook",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {**libraries, **quiet},
    }


def configure_logging(level: str = "info", *, json_lines: bool = True) -> None:
    """Send every logger's records (ours, uvicorn's, ARQ's) to stderr in one format."""
    logging.config.dictConfig(logging_config(level, json_lines=json_lines))
