"""Drives the official, unmodified `fal_client` through one scenario and prints what it saw.

Run in a subprocess, configured as a fal user would configure it and nothing else:
`FAL_QUEUE_RUN_HOST=127.0.0.1:<port>/fal`, `FAL_KEY=<vidhook key>`, `SSL_CERT_FILE=<test CA>`
(fal_client reads the host at import time and insists on https). argv: the scenario name;
stdin: a JSON object `{"endpoint": …, "arguments": …, "webhook_url"?: …}` (an input with a data
URI is too long for argv). Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import fal_client


def _status(status: Any) -> dict[str, Any]:
    return {"kind": type(status).__name__, **vars(status)}


def _error(exc: fal_client.client.FalClientHTTPError) -> dict[str, Any]:
    return {
        "status_code": exc.status_code,
        "message": exc.message,
        "body": exc.response.json(),
        "headers": exc.response_headers,
    }


def subscribe(args: dict[str, Any]) -> dict[str, Any]:
    enqueued: list[str] = []
    updates: list[dict[str, Any]] = []
    started = time.perf_counter()
    result = fal_client.subscribe(
        args["endpoint"],
        arguments=args["arguments"],
        with_logs=True,
        on_enqueue=enqueued.append,
        on_queue_update=lambda status: updates.append(_status(status)),
    )
    return {
        "request_id": enqueued[0],
        "result": result,
        "updates": updates,
        "elapsed_s": time.perf_counter() - started,
    }


def submit_status_get(args: dict[str, Any]) -> dict[str, Any]:
    handle = fal_client.submit(
        args["endpoint"], arguments=args["arguments"], webhook_url=args.get("webhook_url")
    )
    first = _status(handle.status(with_logs=True))
    result = handle.get()
    app = "/".join(args["endpoint"].split("/")[:2])
    return {
        "request_id": handle.request_id,
        "urls": [handle.status_url, handle.response_url, handle.cancel_url],
        "first_status": first,
        "result": result,
        "final_status": _status(fal_client.status(app, handle.request_id, with_logs=True)),
        "result_again": fal_client.result(app, handle.request_id),
    }


def cancel_queued(args: dict[str, Any]) -> dict[str, Any]:
    handle = fal_client.submit(args["endpoint"], arguments=args["arguments"])
    before = _status(handle.status())
    handle.cancel()
    after = _status(handle.status(with_logs=True))
    try:
        handle.get()
        outcome: dict[str, Any] = {"raised": False}
    except fal_client.client.FalClientHTTPError as exc:
        outcome = {"raised": True, **_error(exc)}
    try:
        handle.cancel()
        again: dict[str, Any] = {"raised": False}
    except fal_client.client.FalClientHTTPError as exc:
        again = {"raised": True, **_error(exc)}
    return {
        "request_id": handle.request_id,
        "before": before,
        "after": after,
        "get": outcome,
        "cancel_again": again,
    }


def invalid(args: dict[str, Any]) -> dict[str, Any]:
    try:
        fal_client.submit(args["endpoint"], arguments=args["arguments"])
    except fal_client.client.FalClientHTTPError as exc:
        return {"raised": True, **_error(exc)}
    return {"raised": False}


SCENARIOS = {
    "subscribe": subscribe,
    "submit_status_get": submit_status_get,
    "cancel_queued": cancel_queued,
    "invalid": invalid,
}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](json.load(sys.stdin))))
