"""How long intake validation takes, next to `json.loads` of the same body.

    .venv/bin/python bench/validation.py            # ~15 s
    .venv/bin/python bench/validation.py --quick    # ~3 s, noisier

Prints the time per call of `parse_job_request` on an already-decoded body, and of
`json.loads` of that body's bytes: the work the intake route does anyway before validation
can start. Each figure is the best of several timed rounds (the least disturbed by other
processes; the load average is printed so a noisy run can be recognised).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from service.catalog import IMAGE_MAX_BYTES
from service.validation import RequestInvalid, parse_job_request

PNG_HEAD = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x05\x00\x00\x00\x02\xd0\x08\x02\x00\x00\x00"
)


def png_data_uri(size_bytes: int) -> str:
    # Random bytes: base64 of zeros would be one repeated character, unrealistically kind to
    # any scanner.
    payload = PNG_HEAD + os.urandom(size_bytes - len(PNG_HEAD))
    return "data:image/png;base64," + base64.b64encode(payload).decode("ascii")


def typical_body() -> dict[str, Any]:
    return {
        "endpoint": "fal-ai/veo3.1/image-to-video",
        "input": {
            "prompt": "A slow dolly shot across a rain-soaked neon street at night, reflections "
            "rippling in puddles as a lone cyclist passes under flickering signs.",
            "image_url": "https://cdn.example.com/uploads/2026/11/22/frame-0001.png?X-Amz-Expires=600&X-Amz-Signature=5f1c0e",
            "aspect_ratio": "16:9",
            "duration": "8s",
            "resolution": "1080p",
            "generate_audio": True,
        },
        "callback_url": "https://app.example.com/hooks/veo?tenant=acme",
        "metadata": {"user_id": 4211, "campaign": "winter-teaser"},
    }


def one_mib_body() -> dict[str, Any]:
    body = typical_body()
    body["input"]["image_url"] = png_data_uri(1024 * 1024)
    return body


def worst_body() -> dict[str, Any]:
    return {
        "endpoint": "fal-ai/veo3.1/reference-to-video",
        "input": {
            "prompt": "The three characters from the reference images share a picnic.",
            "image_urls": [png_data_uri(IMAGE_MAX_BYTES) for _ in range(3)],
            "resolution": "1080p",
        },
    }


def invalid_body() -> dict[str, Any]:
    return {
        "endpoint": "fal-ai/veo3.1/image-to-video",
        "input": {
            "prompt": "",
            "image_url": "https://user:pw@cdn.example.com/a.png",
            "duration": 8,
            "resolution": "4K",
            "generate_audio": 1,
            "sed": 3,
        },
        "callback_url": "ftp://app.example.com/hook",
    }


def per_call_us(fn: Callable[[], object], target_s: float, rounds: int) -> float:
    """Best over `rounds` of the mean time per call, each round lasting ~target_s."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    n = max(1, int(target_s / once))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return min(samples)


def validate_or_refuse(body: dict[str, Any]) -> Callable[[], object]:
    def run() -> object:
        try:
            return parse_job_request(body)
        except RequestInvalid as exc:
            return exc

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds")
    args = parser.parse_args()
    target_s, rounds = (0.1, 3) if args.quick else (0.3, 9)

    cases = [
        ("typical: i2v, URL input", typical_body()),
        ("invalid: i2v, 7 problems", invalid_body()),
        ("i2v, 1 MiB data URI", one_mib_body()),
        ("worst: r2v, 3 x 8 MiB data URIs", worst_body()),
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}; best of {rounds} rounds; load average {load}")
    header = f"{'case':<34}{'body':>10}{'parse_job_request':>20}{'json.loads':>14}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name, body in cases:
        raw = json.dumps(body).encode()
        validate_us = per_call_us(validate_or_refuse(body), target_s, rounds)
        loads_us = per_call_us(functools.partial(json.loads, raw), target_s, rounds)
        print(
            f"{name:<34}{_size(len(raw)):>10}{_us(validate_us):>20}{_us(loads_us):>14}"
            f"{validate_us / loads_us:>7.2f}x"
        )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n} B"


def _us(us: float) -> str:
    return f"{us:,.1f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"


if __name__ == "__main__":
    main()
