"""The fake model: validate input like fal, "think" for a while, then render a real MP4.

Order matters for realism: schema and file problems surface at once (fal's apps validate
before inference), while the configured delay only applies to valid requests.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path
from typing import Any

from service.dev.simulator.errors import ErrorDetail, InputRejected
from service.dev.simulator.media import Clip, FileProblem, MediaLoader, Still
from service.dev.simulator.render import Renderer, plan_for, resolve_aspect_ratio
from service.dev.simulator.requests import QueuedRequest
from service.dev.simulator.rules import EndpointRule, FileKind, FileRef, check_schema, file_refs

_THINK_STEPS = 4


class Inference:
    """Turns one request into fal's output `{"video": File}`; raises InputRejected on bad input.

    Other failures: RenderError / TimeoutError when ffmpeg breaks.
    """

    def __init__(
        self,
        *,
        loader: MediaLoader,
        renderer: Renderer,
        data_dir: Path,
        public_url: str,
        delay_s: float,
    ) -> None:
        self._loader = loader
        self._renderer = renderer
        self._outputs = data_dir
        self._work_root = data_dir / "work"
        self._public_url = public_url
        self._delay_s = delay_s

    async def run(self, request: QueuedRequest) -> dict[str, Any]:
        """Validate, fetch inputs, wait the inference delay, render; return the output JSON."""
        rule = request.rule
        request.log(f"Validating input for {rule.endpoint_id}")
        spec, errors = check_schema(rule, request.body)
        workdir = self._work_root / request.request_id
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        try:
            loaded, file_errors = await self._load(file_refs(rule, request.body, errors), workdir)
            errors.extend(file_errors)
            if errors or spec is None:
                raise InputRejected(_in_field_order(rule, errors))
            await self._think(request)
            stills = [self._still(item) for item in loaded]
            source = stills[0]
            aspect_ratio = resolve_aspect_ratio(spec.aspect_ratio, source.width, source.height)
            name = f"{secrets.token_urlsafe(15)}_output.mp4"
            plan = plan_for(
                [still.path for still in stills],
                resolution=spec.resolution,
                aspect_ratio=aspect_ratio,
                duration_s=spec.duration_s,
                audio=spec.audio,
                output=self._outputs / name,
            )
            request.log(
                f"Encoding {plan.width}x{plan.height}, {plan.duration_s}s, "
                f"audio {'on' if plan.audio else 'off'}"
            )
            await self._renderer.render(plan)
            size = (await asyncio.to_thread(plan.output.stat)).st_size
            request.log("Video generated")
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        return {
            "video": {
                "url": f"{self._public_url}/files/{name}",
                "content_type": "video/mp4",
                "file_name": name,
                "file_size": size,
            }
        }

    async def _load(
        self, refs: list[FileRef], workdir: Path
    ) -> tuple[list[Still | Clip], list[ErrorDetail]]:
        async def one(index: int, ref: FileRef) -> Still | Clip | ErrorDetail:
            try:
                if ref.kind is FileKind.VIDEO:
                    return await self._loader.load_video(ref, workdir, f"in{index}")
                return await self._loader.load_image(ref, workdir, f"in{index}")
            except FileProblem as problem:
                return problem.detail

        results = await asyncio.gather(*(one(i, ref) for i, ref in enumerate(refs)))
        loaded = [r for r in results if isinstance(r, Still | Clip)]
        errors = [r for r in results if isinstance(r, dict)]
        return loaded, errors

    async def _think(self, request: QueuedRequest) -> None:
        # Spread the delay over a few progress lines so `?logs=1` pollers see something move.
        for step in range(_THINK_STEPS):
            request.log(f"Generating video: {100 * step // _THINK_STEPS}%")
            await asyncio.sleep(self._delay_s / _THINK_STEPS)
        request.log("Generating video: 100%")

    @staticmethod
    def _still(item: Still | Clip) -> Still:
        # A continuation starts where the input video ends.
        return item.last_frame if isinstance(item, Clip) else item


def _in_field_order(rule: EndpointRule, errors: list[ErrorDetail]) -> list[ErrorDetail]:
    order = {name: index for index, name in enumerate(rule.input_model.model_fields)}

    def key(error: ErrorDetail) -> int:
        loc = error.get("loc", [])
        return order.get(loc[1], len(order)) if len(loc) > 1 else -1

    return sorted(errors, key=key)
