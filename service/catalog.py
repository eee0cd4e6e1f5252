"""The fal endpoints vidhook knows: one declaration per input field of the eight Veo endpoints.

Everything else is derived from these declarations: request validation (`service.validation`),
the JSON Schemas served in the OpenAPI document and by `GET /v1/endpoints`, and cost estimates
(`service.prices`). Change a field here and all of them follow.

Sources (stored copies in shared/seeds, read 2026-11-22; see shared/fal-protocol.md §5):

    [000] fal model page, veo3.1/reference-to-video (older copy)
    [001] fal model API pages: veo3.1 i2v, FLF, extend, r2v and the fast i2v, FLF, extend
    [002] fal docs API reference, veo3.1/reference-to-video
    [003] fal llms.txt, veo3.1/image-to-video
    [004] fal model page, veo2/image-to-video
    [D]   newer fal docs / llms.txt pages as summarised in fal-protocol.md §5

Where the sources disagree the catalog accepts the union of the documented values (the policy
fal-protocol.md §5 recommends) and says so in the field's `note`. A value no source lists is
refused: fal would answer 422, and a 422 may still be billed (fal-protocol.md §2.5). Defaults
are fal's documented ones, for the schema and the cost estimate only; validation never injects them.

Limits vidhook adds where fal states none are module constants below, each with its reason.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from service.prices import PriceTable

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Price families: `service.prices` keys its table on these.
FAMILY_VEO31 = "veo3.1"
FAMILY_VEO31_FAST = "veo3.1-fast"
FAMILY_VEO2 = "veo2"

# How long a request may take from submit until fal has finished it, per model family: the
# grace vidhook waits after an unclear submit before concluding fal never created the request
# (fal's request listing shows finished requests only, so a shorter grace would resubmit jobs
# that are merely still rendering). fal publishes no completion times; these are [I]
# estimates with wide margins over the 1-3 min (Veo 3.1), ~1 min (Fast) and 2-4 min (Veo 2)
# renders seen on fal's model pages and playground, plus queueing behind an account's
# concurrency limit (2 for new accounts, fal-protocol §0.8) and fal's own retries (§2.5).
COMPLETION_S_BY_FAMILY: Mapping[str, float] = MappingProxyType(
    {FAMILY_VEO31: 20 * 60.0, FAMILY_VEO31_FAST: 12 * 60.0, FAMILY_VEO2: 20 * 60.0}
)
# For pass-through endpoints vidhook knows nothing about.
DEFAULT_COMPLETION_S = 30 * 60.0

# "Input images up to 8MB in size" on every image endpoint [001][004]; read as MiB, the
# larger reading, so that no file fal accepts is refused here.
IMAGE_MAX_BYTES = 8 * 1024 * 1024
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
# The seeds name no video size limit, only "up to 8 seconds" [001]. 32 MiB holds an 8 s
# 1080p clip at ~30 Mbit/s; anything bigger should be passed as a URL, not inlined in JSON.
VIDEO_MAX_BYTES = 32 * 1024 * 1024
VIDEO_MEDIA_TYPES = ("video/mp4", "video/quicktime", "video/webm")
VIDEO_MAX_DURATION_S = 8.0
# fal states no prompt limit; this only stops absurd payloads (Veo prompts are a few
# hundred words), generous enough that no real prompt is refused.
PROMPT_MAX_CHARS = 20_000
# Longest file URL accepted: fal states none; 4096 is beyond every presigned S3/GCS URL.
URL_MAX_CHARS = 4096
# fal states no maximum for image_urls; Google documents "up to 3 asset images" for Veo
# reference images (Vertex AI "use reference images" guide, the API behind this endpoint),
# so a fourth image could only fail at fal, after the submit is billed.
REFERENCE_IMAGES_MAX = 3
# fal documents `seed` as a bare integer; Vertex AI's Veo `seed` is a uint32.
SEED_MAX = 2**32 - 1

FieldKind = Literal["string", "enum", "boolean", "integer", "file", "file_list"]
FileKind = Literal["image", "video"]
JsonScalar = str | bool | int

_DATA_URI_PREFIX_MAX = len("data:") + len(";base64,")


@dataclass(frozen=True, slots=True)
class FileSpec:
    """What a file field accepts: an http(s) URL, or a base64 data URI within these limits."""

    kind: FileKind
    media_types: tuple[str, ...]
    max_bytes: int
    max_duration_s: float | None = None

    @property
    def max_data_uri_chars(self) -> int:
        """Length of the longest data URI that decodes to at most `max_bytes`."""
        longest_type = max(len(t) for t in self.media_types)
        return _DATA_URI_PREFIX_MAX + longest_type + 4 * -(-self.max_bytes // 3)

    def describe(self) -> str:
        """One sentence on the accepted forms, for schema descriptions."""
        limit = f"at most {self.max_bytes // (1024 * 1024)} MiB decoded"
        if self.max_duration_s is not None:
            limit += f" and {self.max_duration_s:g} s long"
        return (
            f"A public http(s) URL fal can download without credentials (at most {URL_MAX_CHARS}"
            f" characters), or a data URI `data:<media type>;base64,<payload>` with media type "
            f"{', '.join(self.media_types)}, {limit}."
        )


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input field of a fal endpoint.

    `default` is fal's documented default (None: fal documents none); it is informational and
    never filled in. `note` records where the sources disagree and how vidhook resolved it.
    Strings: `non_blank` requires a non-whitespace character, `max_length` counts characters.
    File lists: `min_items`/`max_items`. Integers: `minimum`/`maximum`.
    """

    name: str
    kind: FieldKind
    description: str
    required: bool = False
    default: JsonScalar | None = None
    enum: tuple[str, ...] = ()
    non_blank: bool = False
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    file: FileSpec | None = None
    min_items: int = 0
    max_items: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """A fal endpoint: its id, input fields, price family and provenance."""

    endpoint_id: str
    title: str
    summary: str
    family: str
    fields: tuple[FieldSpec, ...]
    example: Mapping[str, Any]
    sources: tuple[str, ...]
    notes: tuple[str, ...] = ()
    pricing_note: str | None = None
    field_map: Mapping[str, FieldSpec] = field(init=False, repr=False, compare=False)
    required_fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed: validation reads both on every request.
        object.__setattr__(self, "field_map", MappingProxyType({f.name: f for f in self.fields}))
        object.__setattr__(
            self, "required_fields", tuple(f.name for f in self.fields if f.required)
        )

    @property
    def app_id(self) -> str:
        """`owner/app`, the prefix fal uses for status, result and cancel URLs."""
        owner, app, *_ = self.endpoint_id.split("/")
        return f"{owner}/{app}"

    @property
    def completion_s(self) -> float:
        """The longest vidhook expects a request on this endpoint to take until it is finished."""
        return COMPLETION_S_BY_FAMILY.get(self.family, DEFAULT_COMPLETION_S)

    def default_of(self, name: str) -> JsonScalar | None:
        """fal's documented default for `name`, None when absent or undocumented."""
        spec = self.field_map.get(name)
        return None if spec is None else spec.default


# --- shared field declarations ------------------------------------------------------------

IMAGE_FILE = FileSpec("image", IMAGE_MEDIA_TYPES, IMAGE_MAX_BYTES)
VIDEO_FILE = FileSpec("video", VIDEO_MEDIA_TYPES, VIDEO_MAX_BYTES, VIDEO_MAX_DURATION_S)

_SAFETY_LEVELS = ("1", "2", "3", "4", "5", "6")


def _prompt(description: str) -> FieldSpec:
    return FieldSpec(
        "prompt",
        "string",
        description,
        required=True,
        non_blank=True,
        max_length=PROMPT_MAX_CHARS,
    )


def _image(name: str, description: str, note: str | None = None) -> FieldSpec:
    return FieldSpec(name, "file", description, required=True, file=IMAGE_FILE, note=note)


def _aspect_ratio(values: tuple[str, ...], default: str, note: str | None = None) -> FieldSpec:
    return FieldSpec(
        "aspect_ratio",
        "enum",
        "The aspect ratio of the generated video.",
        default=default,
        enum=values,
        note=note,
    )


def _duration(values: tuple[str, ...], default: str, note: str | None = None) -> FieldSpec:
    return FieldSpec(
        "duration",
        "enum",
        "The duration of the generated video.",
        default=default,
        enum=values,
        note=note,
    )


def _resolution(values: tuple[str, ...], note: str | None = None) -> FieldSpec:
    return FieldSpec(
        "resolution",
        "enum",
        "The resolution of the generated video.",
        default="720p",
        enum=values,
        note=note,
    )


def _generate_audio(note: str | None = None) -> FieldSpec:
    return FieldSpec(
        "generate_audio",
        "boolean",
        "Whether to generate audio for the video; without audio the job costs less.",
        default=True,
        note=note,
    )


def _negative_prompt(note: str | None = None) -> FieldSpec:
    return FieldSpec(
        "negative_prompt",
        "string",
        "A negative prompt to guide the video generation.",
        max_length=PROMPT_MAX_CHARS,
        note=note,
    )


def _seed(note: str | None = None) -> FieldSpec:
    range_note = f"Range 0..{SEED_MAX} is Vertex AI's uint32 seed; fal states none."
    return FieldSpec(
        "seed",
        "integer",
        "The seed for the random number generator.",
        minimum=0,
        maximum=SEED_MAX,
        note=f"{note} {range_note}" if note else range_note,
    )


def _auto_fix(note: str) -> FieldSpec:
    return FieldSpec(
        "auto_fix",
        "boolean",
        "Whether to automatically attempt to fix prompts that fail content policy or other "
        "validation checks by rewriting them.",
        default=False,
        note=note,
    )


def _safety_tolerance(note: str) -> FieldSpec:
    return FieldSpec(
        "safety_tolerance",
        "enum",
        "The safety tolerance level for content moderation: 1 is the most strict (blocks most "
        "content), 6 the least strict.",
        default="4",
        enum=_SAFETY_LEVELS,
        note=note,
    )


_VEO31_ASPECT = ("auto", "16:9", "9:16")
_VEO31_DURATIONS = ("4s", "6s", "8s")
_VEO31_RESOLUTIONS = ("720p", "1080p", "4k")

_AUTO_FIX_NOTE = "[001] documents no default; [002] and newer fal docs [D] say false."
_SAFETY_NOTE = (
    "Not in seed [001]; listed for this endpoint by newer fal docs and llms.txt pages [D] "
    "(seed [002] lists it for reference-to-video). Accepted as documented there."
)
_AUDIO_NOTE = (
    "Audio off saves 50% on Veo 3.1 and 33% on Veo 3.1 Fast per fal's pricing; "
    "[003] says 50% and [000] says 33% for the standard model."
)


def _veo31_optional_fields(*, absent_from_003: bool = False) -> tuple[FieldSpec, ...]:
    """The optional fields every Veo 3.1 i2v/FLF/extend endpoint shares in [001]."""
    only_001 = "In [001], absent from [003]; accepted (union)." if absent_from_003 else None
    return (
        _generate_audio(_AUDIO_NOTE),
        _negative_prompt(only_001),
        _seed(only_001),
        _auto_fix(f"{only_001} {_AUTO_FIX_NOTE}" if only_001 else _AUTO_FIX_NOTE),
        _safety_tolerance(_SAFETY_NOTE),
    )


def _image_to_video(endpoint_id: str, family: str, model: str) -> EndpointSpec:
    fast = family == FAMILY_VEO31_FAST
    aspect_note = (
        "[001]: auto, 16:9, 9:16, default auto, although its description says only 16:9 and "
        "9:16 are supported (auto presumably picks one of them from the image)."
    )
    if not fast:
        aspect_note = (
            "[001]: auto, 16:9, 9:16, default auto; [003]: 16:9, 9:16, default 16:9. "
            "Union accepted; default as [001]."
        )
    return EndpointSpec(
        endpoint_id=endpoint_id,
        title=f"{model} image to video",
        summary=f"Animate an input image with Google's {model} model, guided by a text prompt.",
        family=family,
        fields=(
            _prompt("The text prompt describing how the image should be animated."),
            _image(
                "image_url",
                "The input image to animate. Should be 720p or higher in 16:9 or 9:16; other "
                "aspect ratios are cropped to fit.",
            ),
            _aspect_ratio(_VEO31_ASPECT, "auto", aspect_note),
            _duration(_VEO31_DURATIONS, "8s"),
            _resolution(
                _VEO31_RESOLUTIONS,
                None if fast else "[001]: 720p, 1080p, 4k; [003]: 720p, 1080p. Union accepted.",
            ),
            *_veo31_optional_fields(absent_from_003=not fast),
        ),
        example={
            "prompt": "A monkey and polar bear host a casual podcast about AI inference.",
            "image_url": (
                "https://storage.googleapis.com/falserverless/example_inputs/veo31_i2v_input.jpg"
            ),
        },
        sources=("[001]", "[D]") if fast else ("[001]", "[003]", "[D]"),
        notes=("Input images up to 8 MB; images not in 16:9 or 9:16 are cropped.",),
    )


def _first_last_frame(endpoint_id: str, family: str, model: str) -> EndpointSpec:
    required_note = "[001] marks no field required; newer fal docs [D] require both frames."
    return EndpointSpec(
        endpoint_id=endpoint_id,
        title=f"{model} first/last frame to video",
        summary=(
            f"Animate between a first and a last frame with Google's {model} model, guided by a "
            "text prompt."
        ),
        family=family,
        fields=(
            _prompt("The text prompt describing how to animate between the two frames."),
            _image("first_frame_url", "The first frame of the video.", required_note),
            _image("last_frame_url", "The last frame of the video.", required_note),
            _aspect_ratio(_VEO31_ASPECT, "auto"),
            _duration(_VEO31_DURATIONS, "8s"),
            _resolution(_VEO31_RESOLUTIONS),
            *_veo31_optional_fields(),
        ),
        example={
            "prompt": "A woman looks into the camera, breathes in, then exclaims energetically.",
            "first_frame_url": (
                "https://storage.googleapis.com/falserverless/example_inputs/"
                "veo31-flf2v-input-1.jpeg"
            ),
            "last_frame_url": (
                "https://storage.googleapis.com/falserverless/example_inputs/"
                "veo31-flf2v-input-2.jpeg"
            ),
        },
        sources=("[001]", "[D]"),
        notes=("Input images up to 8 MB.",),
    )


def _extend_video(endpoint_id: str, family: str, model: str) -> EndpointSpec:
    fast = family == FAMILY_VEO31_FAST
    return EndpointSpec(
        endpoint_id=endpoint_id,
        title=f"{model} extend video",
        summary=f"Extend an existing video with Google's {model} model, guided by a text prompt.",
        family=family,
        fields=(
            _prompt("The text prompt describing how the video should be extended."),
            FieldSpec(
                "video_url",
                "file",
                "The video to extend: up to 8 s, 720p or 1080p, 16:9 or 9:16.",
                required=True,
                file=VIDEO_FILE,
                note=(
                    "fal states no size limit, only 'up to 8 seconds' [001]; vidhook caps "
                    "data URIs at 32 MiB and checks the MP4/QuickTime duration (8 s + 0.1 s "
                    "container slack)."
                ),
            ),
            _aspect_ratio(_VEO31_ASPECT, "auto"),
            _duration(
                ("7s",),
                "7s",
                "[001]: enum with the single value 7s; newer fal docs [D]: a plain string "
                "defaulting to 7s, naming no other value. Only 7s accepted.",
            ),
            _resolution(
                ("720p",),
                "[001]: enum with the single value 720p; newer fal docs [D]: a plain string "
                "defaulting to 720p. Only 720p accepted; whether 1080p output works is open "
                "(fal-protocol.md §7.8). The INPUT video may be 720p or 1080p.",
            ),
            *_veo31_optional_fields(),
        ),
        example={
            "prompt": "Continue the scene naturally, maintaining the same style and motion.",
            "video_url": (
                "https://v3b.fal.media/files/b/0a8670fe/"
                "pY8UGl4_C452wOm9XUBYO_9ae04df8771c4f3f979fa5cabeca6ada.mp4"
            ),
        },
        sources=("[001]", "[D]"),
        notes=(
            "Input videos up to 8 seconds, 720p or 1080p, 16:9 or 9:16.",
            "fal: 'Video extension is only supported via Vertex AI'; the fast page says "
            "'Extend Veo-created videos up to 30 seconds', so expect Veo-made inputs to work best.",
        ),
        pricing_note=(
            None
            if fast
            else "fal's price for standard extend-video was not seen first-hand; the Veo 3.1 "
            "standard rate is assumed (fal-protocol.md §6)."
        ),
    )


_REFERENCE_TO_VIDEO = EndpointSpec(
    endpoint_id="fal-ai/veo3.1/reference-to-video",
    title="Veo 3.1 reference to video",
    summary=(
        "Generate a video from reference images (consistent subject appearance) and a text "
        "prompt with Google's Veo 3.1 model."
    ),
    family=FAMILY_VEO31,
    fields=(
        _prompt("The text prompt describing the video you want to generate."),
        FieldSpec(
            "image_urls",
            "file_list",
            "The reference images to use for consistent subject appearance.",
            required=True,
            file=IMAGE_FILE,
            min_items=1,
            max_items=REFERENCE_IMAGES_MAX,
            note=(
                "fal states no maximum; Google's Veo reference images allow up to 3 asset "
                "images, so vidhook accepts 1 to 3."
            ),
        ),
        _aspect_ratio(
            ("16:9", "9:16"),
            "16:9",
            "[001][002]: 16:9, 9:16, default 16:9; absent from [000]. No 'auto' here.",
        ),
        _duration(
            ("8s",),
            "8s",
            "[000][001]: enum with the single value 8s; [002]: a plain string defaulting to "
            "8s, naming no other value. Only 8s accepted.",
        ),
        _resolution(
            _VEO31_RESOLUTIONS, "[001][002]: 720p, 1080p, 4k; [000]: 720p, 1080p. Union accepted."
        ),
        _generate_audio(_AUDIO_NOTE),
        _auto_fix(f"Absent from [000]. {_AUTO_FIX_NOTE}"),
        _safety_tolerance("In [002] only; absent from [000] and [001]. Accepted (union)."),
    ),
    example={
        "prompt": "A chimpanzee wearing overalls frolics in the grassy field.",
        "image_urls": [
            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png",
        ],
    },
    sources=("[000]", "[001]", "[002]"),
    notes=(
        "Input images up to 8 MB each.",
        "No seed or negative_prompt on this endpoint in any source.",
    ),
)

_VEO2_IMAGE_TO_VIDEO = EndpointSpec(
    endpoint_id="fal-ai/veo2/image-to-video",
    title="Veo 2 image to video",
    summary="Animate an input image with Google's Veo 2 model (720p output, no audio).",
    family=FAMILY_VEO2,
    fields=(
        _prompt("The text prompt describing how the image should be animated."),
        _image("image_url", "The input image to animate. Should be 720p or higher."),
        _aspect_ratio(("auto", "auto_prefer_portrait", "16:9", "9:16"), "auto"),
        _duration(("5s", "6s", "7s", "8s"), "5s"),
    ),
    example={
        "prompt": "A lego chef cooking eggs",
        "image_url": "https://fal.media/files/elephant/6fq8JDSjb1osE_c3J_F2H.png",
    },
    sources=("[004]",),
    notes=(
        "Input images up to 8 MB; 720p output.",
        "No resolution, audio, seed or negative_prompt fields.",
    ),
)

ENDPOINTS: Mapping[str, EndpointSpec] = MappingProxyType(
    {
        spec.endpoint_id: spec
        for spec in (
            _image_to_video("fal-ai/veo3.1/image-to-video", FAMILY_VEO31, "Veo 3.1"),
            _first_last_frame("fal-ai/veo3.1/first-last-frame-to-video", FAMILY_VEO31, "Veo 3.1"),
            _REFERENCE_TO_VIDEO,
            _extend_video("fal-ai/veo3.1/extend-video", FAMILY_VEO31, "Veo 3.1"),
            _image_to_video("fal-ai/veo3.1/fast/image-to-video", FAMILY_VEO31_FAST, "Veo 3.1 Fast"),
            _first_last_frame(
                "fal-ai/veo3.1/fast/first-last-frame-to-video", FAMILY_VEO31_FAST, "Veo 3.1 Fast"
            ),
            _extend_video("fal-ai/veo3.1/fast/extend-video", FAMILY_VEO31_FAST, "Veo 3.1 Fast"),
            _VEO2_IMAGE_TO_VIDEO,
        )
    }
)
SUPPORTED_ENDPOINTS: tuple[str, ...] = tuple(ENDPOINTS)


def get_endpoint(endpoint_id: str) -> EndpointSpec | None:
    """The catalog entry for `endpoint_id`, or None for an endpoint vidhook does not know."""
    return ENDPOINTS.get(endpoint_id)


def completion_s(endpoint_id: str) -> float:
    """The longest a request on `endpoint_id` is expected to take (pass-through: a default)."""
    spec = ENDPOINTS.get(endpoint_id)
    return spec.completion_s if spec is not None else DEFAULT_COMPLETION_S


# --- JSON Schema ----------------------------------------------------------------------------

# ECMA-262 has no inline flags, so the scheme's case-insensitivity is spelled out. Data URIs
# must start with a lowercase "data:", as the validator requires.
FILE_VALUE_PATTERN = "^(?:[Hh][Tt][Tt][Pp][Ss]?://|data:)"


def schema_name(spec: EndpointSpec) -> str:
    """Component name for the endpoint's input schema, e.g. `Veo31FastImageToVideoInput`."""
    parts = re.split(r"[^A-Za-z0-9]+", spec.endpoint_id.split("/", 1)[1])
    return "".join(p[:1].upper() + p[1:] for p in parts if p) + "Input"


def file_value_schema(file: FileSpec) -> dict[str, Any]:
    """Schema of one file value: an http(s) URL or a data URI of an accepted media type."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": file.max_data_uri_chars,
        "pattern": FILE_VALUE_PATTERN,
        "description": file.describe(),
        "x-vidhook-file": {
            "kind": file.kind,
            "media_types": list(file.media_types),
            "max_bytes": file.max_bytes,
            "max_url_chars": URL_MAX_CHARS,
            **({"max_duration_s": file.max_duration_s} if file.max_duration_s else {}),
        },
    }


def field_json_schema(spec: FieldSpec) -> dict[str, Any]:
    """JSON Schema 2020-12 of one input field."""
    schema: dict[str, Any]
    if spec.kind == "string":
        schema = {"type": "string"}
        if spec.non_blank:
            schema.update(minLength=1, pattern=r"\S")
        if spec.max_length is not None:
            schema["maxLength"] = spec.max_length
    elif spec.kind == "enum":
        schema = {"type": "string", "enum": list(spec.enum)}
    elif spec.kind == "boolean":
        schema = {"type": "boolean"}
    elif spec.kind == "integer":
        schema = {"type": "integer"}
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    else:
        assert spec.file is not None, spec.name
        item = file_value_schema(spec.file)
        if spec.kind == "file":
            schema = item
            schema["description"] = f"{spec.description} {item['description']}"
        else:
            schema = {"type": "array", "items": item, "minItems": spec.min_items}
            if spec.max_items is not None:
                schema["maxItems"] = spec.max_items
    schema.setdefault("description", spec.description)
    if spec.default is not None:
        schema["default"] = spec.default
    if spec.note:
        schema["x-vidhook-note"] = spec.note
    return schema


def input_json_schema(spec: EndpointSpec, *, include_dialect: bool = True) -> dict[str, Any]:
    """JSON Schema 2020-12 (usable as an OpenAPI 3.1 component) of the endpoint's fal input.

    Built from the same declarations the validator reads. The schema cannot express the checks
    on file contents (base64 validity, magic numbers, decoded size, video duration); the
    validator enforces those too. Returns a fresh dict on every call, safe to modify.
    """
    schema: dict[str, Any] = {}
    if include_dialect:
        schema["$schema"] = JSON_SCHEMA_DIALECT
    schema.update(
        title=schema_name(spec),
        description=f"Input of {spec.endpoint_id}: {spec.summary}",
        type="object",
        properties={f.name: field_json_schema(f) for f in spec.fields},
        required=list(spec.required_fields),
        additionalProperties=False,
        examples=[copy.deepcopy(dict(spec.example))],
    )
    return schema


def describe_endpoint(spec: EndpointSpec, prices: PriceTable) -> dict[str, Any]:
    """The `GET /v1/endpoints` entry for `spec`: identity, input schema, prices, provenance."""
    fields = [
        {
            "name": f.name,
            "kind": f.kind,
            "required": f.required,
            **({"default": f.default} if f.default is not None else {}),
            **({"enum": list(f.enum)} if f.enum else {}),
            **({"note": f.note} if f.note else {}),
        }
        for f in spec.fields
    ]
    return {
        "endpoint": spec.endpoint_id,
        "app_id": spec.app_id,
        "title": spec.title,
        "summary": spec.summary,
        "family": spec.family,
        "input_schema": input_json_schema(spec, include_dialect=False),
        "fields": fields,
        "example_input": copy.deepcopy(dict(spec.example)),
        "output": {"video": "File: url (always), content_type, file_name, file_size"},
        "pricing": prices.describe(spec),
        "notes": list(spec.notes),
        "sources": list(spec.sources),
    }


def describe_passthrough(patterns: Sequence[str]) -> list[dict[str, Any]]:
    """`GET /v1/endpoints` entries for the configured pass-through patterns (ALLOWED_ENDPOINTS).

    vidhook only checks that their input is a JSON object and cannot price them.
    """
    return [
        {
            "pattern": pattern,
            "input_schema": {"type": "object"},
            "pricing": None,
            "notes": ["Pass-through: input is forwarded unchecked apart from being an object."],
        }
        for pattern in patterns
    ]
