"""fal's own view of the eight Veo endpoints: input schemas, defaults and file fields.

This is deliberately independent of vidhook's catalog: when the two disagree, tests that run
vidhook against the simulator fail, which is the point. The schemas follow fal's model pages
(seed docs 000-004, see `shared/fal-protocol.md` §5); where pages disagree the enum on the
model's own API page wins. Validation errors come from pydantic exactly as fal's FastAPI apps
produce them (`missing`, `literal_error` with `ctx.expected`, ...), with `"body"` prefixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from service.dev.simulator.errors import ErrorDetail, echo_input

SafetyTolerance = Literal["1", "2", "3", "4", "5", "6"]
Veo31AspectRatio = Literal["auto", "16:9", "9:16"]
Veo31Resolution = Literal["720p", "1080p", "4k"]


class _Veo31Common(BaseModel):
    prompt: str
    negative_prompt: str | None = None
    generate_audio: bool = True
    seed: int | None = None
    auto_fix: bool = False
    safety_tolerance: SafetyTolerance = "4"


class Veo31ImageToVideoInput(_Veo31Common):
    """fal-ai/veo3.1/image-to-video and fal-ai/veo3.1/fast/image-to-video."""

    image_url: str
    aspect_ratio: Veo31AspectRatio = "auto"
    duration: Literal["4s", "6s", "8s"] = "8s"
    resolution: Veo31Resolution = "720p"


class Veo31FirstLastFrameInput(_Veo31Common):
    """fal-ai/veo3.1/first-last-frame-to-video and its fast variant."""

    first_frame_url: str
    last_frame_url: str
    aspect_ratio: Veo31AspectRatio = "auto"
    duration: Literal["4s", "6s", "8s"] = "8s"
    resolution: Veo31Resolution = "720p"


class Veo31ReferenceToVideoInput(BaseModel):
    """fal-ai/veo3.1/reference-to-video: no `auto` ratio, no seed or negative prompt."""

    prompt: str
    # Veo needs at least one reference; fal documents no maximum, so none is enforced.
    image_urls: list[str] = Field(min_length=1)
    aspect_ratio: Literal["16:9", "9:16"] = "16:9"
    duration: Literal["8s"] = "8s"
    resolution: Veo31Resolution = "720p"
    generate_audio: bool = True
    auto_fix: bool = False
    safety_tolerance: SafetyTolerance = "4"


class Veo31ExtendVideoInput(_Veo31Common):
    """fal-ai/veo3.1/extend-video and its fast variant: 7 s of 720p continuation."""

    video_url: str
    aspect_ratio: Veo31AspectRatio = "auto"
    duration: Literal["7s"] = "7s"
    resolution: Literal["720p"] = "720p"


class Veo2ImageToVideoInput(BaseModel):
    """fal-ai/veo2/image-to-video: always 720p, never audio, 5-8 s."""

    prompt: str
    image_url: str
    aspect_ratio: Literal["auto", "auto_prefer_portrait", "16:9", "9:16"] = "auto"
    duration: Literal["5s", "6s", "7s", "8s"] = "5s"


class Mode(StrEnum):
    """What the model makes its video from."""

    IMAGE = "image-to-video"
    FIRST_LAST = "first-last-frame-to-video"
    REFERENCE = "reference-to-video"
    EXTEND = "extend-video"


class FileKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class FileRef:
    """One file input to fetch: where it sits in the body (for error `loc`) and its URL."""

    loc: tuple[str | int, ...]
    url: str
    kind: FileKind


@dataclass(frozen=True)
class EndpointRule:
    """One fal endpoint as fal sees it."""

    endpoint_id: str
    mode: Mode
    input_model: type[BaseModel]
    file_fields: tuple[tuple[str, FileKind], ...]
    can_generate_audio: bool

    @property
    def app_id(self) -> str:
        """`owner/app`, the prefix fal uses for status, result and cancel URLs."""
        owner, app, *_ = self.endpoint_id.split("/")
        return f"{owner}/{app}"


def _rule(endpoint_id: str, mode: Mode, model: type[BaseModel], audio: bool) -> EndpointRule:
    files = {
        Mode.IMAGE: (("image_url", FileKind.IMAGE),),
        Mode.FIRST_LAST: (("first_frame_url", FileKind.IMAGE), ("last_frame_url", FileKind.IMAGE)),
        Mode.REFERENCE: (("image_urls", FileKind.IMAGE),),
        Mode.EXTEND: (("video_url", FileKind.VIDEO),),
    }[mode]
    return EndpointRule(endpoint_id, mode, model, files, audio)


ENDPOINTS: dict[str, EndpointRule] = {
    rule.endpoint_id: rule
    for rule in (
        _rule("fal-ai/veo3.1/image-to-video", Mode.IMAGE, Veo31ImageToVideoInput, True),
        _rule("fal-ai/veo3.1/fast/image-to-video", Mode.IMAGE, Veo31ImageToVideoInput, True),
        _rule(
            "fal-ai/veo3.1/first-last-frame-to-video",
            Mode.FIRST_LAST,
            Veo31FirstLastFrameInput,
            True,
        ),
        _rule(
            "fal-ai/veo3.1/fast/first-last-frame-to-video",
            Mode.FIRST_LAST,
            Veo31FirstLastFrameInput,
            True,
        ),
        _rule("fal-ai/veo3.1/reference-to-video", Mode.REFERENCE, Veo31ReferenceToVideoInput, True),
        _rule("fal-ai/veo3.1/extend-video", Mode.EXTEND, Veo31ExtendVideoInput, True),
        _rule("fal-ai/veo3.1/fast/extend-video", Mode.EXTEND, Veo31ExtendVideoInput, True),
        _rule("fal-ai/veo2/image-to-video", Mode.IMAGE, Veo2ImageToVideoInput, False),
    )
}

APP_IDS = frozenset(rule.app_id for rule in ENDPOINTS.values())


@dataclass(frozen=True)
class GenerationSpec:
    """The validated knobs the renderer needs, with fal's defaults applied."""

    duration_s: int
    aspect_ratio: str
    resolution: str
    audio: bool


def check_schema(
    rule: EndpointRule, body: dict[str, Any]
) -> tuple[GenerationSpec | None, list[ErrorDetail]]:
    """Validate `body` against the endpoint's schema; return the spec or every error found."""
    try:
        model = rule.input_model.model_validate(body)
    except ValidationError as exc:
        # Round-trip through pydantic's JSON so `ctx` values are always JSON-safe.
        errors: list[ErrorDetail] = json.loads(exc.json(include_url=False))
        for error in errors:
            error["loc"] = ["body", *error["loc"]]
            if "input" in error:
                error["input"] = _shorten_data_uris(error["input"])
        return None, errors
    fields = model.model_dump()
    spec = GenerationSpec(
        duration_s=int(str(fields["duration"]).removesuffix("s")),
        aspect_ratio=str(fields["aspect_ratio"]),
        resolution=str(fields.get("resolution", "720p")),
        audio=rule.can_generate_audio and bool(fields.get("generate_audio", False)),
    )
    return spec, []


def file_refs(rule: EndpointRule, body: dict[str, Any], errors: list[ErrorDetail]) -> list[FileRef]:
    """The file inputs worth fetching: well-typed values whose field has no schema error yet."""
    bad_fields = {error["loc"][1] for error in errors if len(error["loc"]) > 1}
    refs: list[FileRef] = []
    for name, kind in rule.file_fields:
        if name in bad_fields:
            continue
        value = body.get(name)
        if isinstance(value, str):
            refs.append(FileRef(("body", name), value, kind))
        elif isinstance(value, list):
            refs.extend(
                FileRef(("body", name, index), item, kind)
                for index, item in enumerate(value)
                if isinstance(item, str)
            )
    return refs


def _shorten_data_uris(value: Any) -> Any:
    """Echoed inputs keep their shape, but data URIs are cut so errors stay small."""
    if isinstance(value, str):
        return echo_input(value)
    if isinstance(value, dict):
        return {key: _shorten_data_uris(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shorten_data_uris(item) for item in value]
    return value
