"""The published contract: /v1/endpoints, /openapi.json, /docs, and what intake refuses."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from service.app import create_app
from service.catalog import SUPPORTED_ENDPOINTS
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, i2v_body, is_terminal, wait_for
from tests.support.servers import ServerThread


def test_endpoints_lists_every_catalog_endpoint_with_schema_and_price(client: httpx.Client) -> None:
    listing = client.get("/v1/endpoints").json()
    by_id = {entry["endpoint"]: entry for entry in listing["endpoints"]}
    assert sorted(by_id) == sorted(SUPPORTED_ENDPOINTS)
    i2v = by_id["fal-ai/veo3.1/image-to-video"]
    assert i2v["input_schema"]["required"] == ["prompt", "image_url"]
    assert i2v["pricing"]
    assert [entry["pattern"] for entry in listing["passthrough"]] == ["fal-ai/kling-video/*"]


def test_openapi_document_covers_every_route(client: httpx.Client, settings: Settings) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    app = create_app(settings)
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        # OpenAPI names a parameter, not Starlette's convertor: {key:path} is {key}.
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
        if route.path not in ("/openapi.json", "/docs")
    }
    assert served <= documented, served - documented
    assert any(isinstance(route, Mount) and route.path == "/docs/assets" for route in app.routes)
    components = document["components"]["schemas"]
    refs = {
        variant["properties"].get("input", {}).get("$ref")
        for variant in components["JobRequest"]["oneOf"]
    }
    assert {ref.rsplit("/", 1)[1] for ref in refs if ref} <= set(components)


def test_docs_page_works_offline_from_packaged_assets(system: ServerThread) -> None:
    page = httpx.get(f"{system.url}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/openapi.json", ""), "no CDN links"
    bundle = httpx.get(f"{system.url}/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    system: ServerThread, settings: Settings
) -> None:
    # Announce a body past the limit and send none of it: the answer must not wait for it.
    with socket.create_connection(("127.0.0.1", system.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TENANT_A_KEY}\r\n".encode()
            + f"Content-Length: {settings.max_request_bytes + 1}\r\n\r\n".encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_chunked_body_over_the_limit_is_refused(client: httpx.Client, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent <= settings.max_request_bytes:
            sent += 1 << 20
            yield b" " * (1 << 20)

    answer = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413


def test_unknown_fields_get_a_suggestion_and_every_problem_is_listed(client: httpx.Client) -> None:
    body = i2v_body("suggest", durration="8s", resolution="8k")
    answer = client.post("/v1/jobs", json=body).json()
    problems = {tuple(error["path"]): error for error in answer["errors"]}
    assert problems[("input", "durration")]["ctx"]["suggestion"] == "duration"
    assert set(problems[("input", "resolution")]["ctx"]["allowed"]) == {"720p", "1080p", "4k"}


def test_an_unknown_endpoint_lists_the_supported_ones(client: httpx.Client) -> None:
    answer = client.post("/v1/jobs", json={**i2v_body("x"), "endpoint": "fal-ai/veo4/magic"})
    assert answer.status_code == 422
    [problem] = answer.json()["errors"]
    assert problem["path"] == ["endpoint"]
    assert set(SUPPORTED_ENDPOINTS) <= set(problem["ctx"]["supported"])


def test_a_passthrough_endpoint_is_forwarded_and_fals_refusal_recorded(
    client: httpx.Client,
) -> None:
    # ALLOWED_ENDPOINTS admits fal-ai/kling-video/*: checked only as an object, then sent to
    # fal. The simulator knows only Veo, so "fal" refuses it at submit (404).
    body = {"endpoint": "fal-ai/kling-video/v2/image-to-video", "input": {"prompt": "anything"}}
    created = client.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["estimated_cost_usd"] is None
    job = wait_for(client, created.json()["id"], is_terminal)
    assert job["status"] == "failed" and job["error"]["type"] == "fal_rejected"


def test_every_job_carries_its_estimated_cost(client: httpx.Client) -> None:
    # Veo 3.1 Fast, 4 s, audio on by default: 4 x $0.15.
    job = client.post("/v1/jobs", json=i2v_body("cost", duration="4s")).json()
    assert job["estimated_cost_usd"] == pytest.approx(0.60)


@pytest.fixture(scope="module")
def fuzz_target(settings: Settings) -> Iterator[str]:
    """An API instance whose queue no worker reads: generated jobs are recorded, never run."""
    values: dict[str, Any] = dict(settings)
    # Nothing finishes here: `Prefer: wait`, `?wait=` and event streams last 0.2 s at most.
    values.update(redis_key_prefix="fuzz:", arq_queue_name="fuzz:queue", port=0)
    values.update(wait_max_s=0.2, sse_max_s=0.2)
    with ServerThread(create_app(Settings(**values))) as server:
        yield server.url


def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(
    fuzz_target: str,
) -> None:
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25")
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    run = subprocess.run(
        [
            schemathesis, "run", f"{fuzz_target}/openapi.json",
            "--url", fuzz_target, "-H", f"Authorization: Bearer {TENANT_A_KEY}",
            "-c", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "-n", examples, "--seed", "1", "--generation-deterministic", "--no-color",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
