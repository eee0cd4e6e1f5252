"""Request tables shared by the validation and JSON Schema tests.

The expectations are written out by hand from the seed docs rather than read from the
catalog, so that a catalog edit which drops a documented value fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.catalog.media import GIF, JPEG, PNG, TEXT, WEBP, data_uri, mp4

I2V = "fal-ai/veo3.1/image-to-video"
FLF = "fal-ai/veo3.1/first-last-frame-to-video"
R2V = "fal-ai/veo3.1/reference-to-video"
EXTEND = "fal-ai/veo3.1/extend-video"
FAST_I2V = "fal-ai/veo3.1/fast/image-to-video"
FAST_FLF = "fal-ai/veo3.1/fast/first-last-frame-to-video"
FAST_EXTEND = "fal-ai/veo3.1/fast/extend-video"
VEO2 = "fal-ai/veo2/image-to-video"
ALL_ENDPOINTS = (I2V, FLF, R2V, EXTEND, FAST_I2V, FAST_FLF, FAST_EXTEND, VEO2)
IMAGE_ENDPOINTS = (I2V, FAST_I2V, VEO2)
EXTEND_ENDPOINTS = (EXTEND, FAST_EXTEND)

IMAGE_URL = "https://cdn.example.com/inputs/frame.png"
VIDEO_URL = "https://cdn.example.com/inputs/clip.mp4"
PROMPT = "A slow dolly shot across a rain-soaked neon street at night."

REQUIRED: dict[str, dict[str, Any]] = {
    I2V: {"prompt": PROMPT, "image_url": IMAGE_URL},
    FAST_I2V: {"prompt": PROMPT, "image_url": IMAGE_URL},
    FLF: {"prompt": PROMPT, "first_frame_url": IMAGE_URL, "last_frame_url": IMAGE_URL},
    FAST_FLF: {"prompt": PROMPT, "first_frame_url": IMAGE_URL, "last_frame_url": IMAGE_URL},
    R2V: {"prompt": PROMPT, "image_urls": [IMAGE_URL]},
    EXTEND: {"prompt": PROMPT, "video_url": VIDEO_URL},
    FAST_EXTEND: {"prompt": PROMPT, "video_url": VIDEO_URL},
    VEO2: {"prompt": PROMPT, "image_url": IMAGE_URL},
}

_VEO31_OPTIONAL: dict[str, Any] = {
    "aspect_ratio": "16:9",
    "duration": "6s",
    "resolution": "1080p",
    "generate_audio": False,
    "negative_prompt": "blurry, low quality",
    "seed": 42,
    "auto_fix": True,
    "safety_tolerance": "2",
}
_EXTEND_OPTIONAL: dict[str, Any] = {
    "aspect_ratio": "9:16",
    "duration": "7s",
    "resolution": "720p",
    "generate_audio": True,
    "negative_prompt": "",
    "seed": 0,
    "auto_fix": False,
    "safety_tolerance": "6",
}

# Every documented field of every endpoint, with a valid value (a mix of URLs and data URIs).
FULL_INPUTS: dict[str, dict[str, Any]] = {
    I2V: {**REQUIRED[I2V], **_VEO31_OPTIONAL},
    FAST_I2V: {**REQUIRED[FAST_I2V], **_VEO31_OPTIONAL, "image_url": data_uri("image/png", PNG)},
    FLF: {**REQUIRED[FLF], **_VEO31_OPTIONAL, "last_frame_url": data_uri("image/jpeg", JPEG)},
    FAST_FLF: {
        **REQUIRED[FAST_FLF],
        **_VEO31_OPTIONAL,
        "first_frame_url": data_uri("image/webp", WEBP),
    },
    R2V: {
        "prompt": PROMPT,
        "image_urls": [IMAGE_URL, data_uri("image/png", PNG), data_uri("image/webp", WEBP)],
        "aspect_ratio": "9:16",
        "duration": "8s",
        "resolution": "4k",
        "generate_audio": False,
        "auto_fix": True,
        "safety_tolerance": "1",
    },
    EXTEND: {**REQUIRED[EXTEND], **_EXTEND_OPTIONAL},
    FAST_EXTEND: {
        **REQUIRED[FAST_EXTEND],
        **_EXTEND_OPTIONAL,
        "video_url": data_uri("video/mp4", mp4(7.0)),
    },
    VEO2: {
        "prompt": PROMPT,
        "image_url": data_uri("image/jpeg", JPEG),
        "aspect_ratio": "auto_prefer_portrait",
        "duration": "7s",
    },
}

_SAFETY = ("1", "2", "3", "4", "5", "6")
_VEO31_ENUMS = {
    "aspect_ratio": ("auto", "16:9", "9:16"),
    "duration": ("4s", "6s", "8s"),
    "resolution": ("720p", "1080p", "4k"),
    "safety_tolerance": _SAFETY,
}
_EXTEND_ENUMS = {
    "aspect_ratio": ("auto", "16:9", "9:16"),
    "duration": ("7s",),
    "resolution": ("720p",),
    "safety_tolerance": _SAFETY,
}
# The union of what the seed docs list, per endpoint and enum field.
EXPECTED_ENUMS: dict[str, dict[str, tuple[str, ...]]] = {
    I2V: _VEO31_ENUMS,
    FAST_I2V: _VEO31_ENUMS,
    FLF: _VEO31_ENUMS,
    FAST_FLF: _VEO31_ENUMS,
    R2V: {
        "aspect_ratio": ("16:9", "9:16"),
        "duration": ("8s",),
        "resolution": ("720p", "1080p", "4k"),
        "safety_tolerance": _SAFETY,
    },
    EXTEND: _EXTEND_ENUMS,
    FAST_EXTEND: _EXTEND_ENUMS,
    VEO2: {
        "aspect_ratio": ("auto", "auto_prefer_portrait", "16:9", "9:16"),
        "duration": ("5s", "6s", "7s", "8s"),
    },
}

# Values one source documents and another does not: each must be accepted.
UNION_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("i2v aspect auto [001]", I2V, {"aspect_ratio": "auto"}),
    ("i2v aspect 16:9 default [003]", I2V, {"aspect_ratio": "16:9"}),
    ("i2v 4k [001] not [003]", I2V, {"resolution": "4k"}),
    ("i2v negative_prompt [001] not [003]", I2V, {"negative_prompt": "text overlays"}),
    ("i2v seed [001] not [003]", I2V, {"seed": 7}),
    ("i2v auto_fix [001] not [003]", I2V, {"auto_fix": False}),
    ("i2v safety_tolerance [D]", I2V, {"safety_tolerance": "5"}),
    ("flf safety_tolerance [D]", FLF, {"safety_tolerance": "4"}),
    ("fast flf safety_tolerance [D]", FAST_FLF, {"safety_tolerance": "3"}),
    ("extend safety_tolerance [D]", EXTEND, {"safety_tolerance": "4"}),
    ("fast extend safety_tolerance [D]", FAST_EXTEND, {"safety_tolerance": "4"}),
    ("r2v 4k [001][002] not [000]", R2V, {"resolution": "4k"}),
    ("r2v aspect [001][002] not [000]", R2V, {"aspect_ratio": "16:9"}),
    ("r2v auto_fix [001][002] not [000]", R2V, {"auto_fix": True}),
    ("r2v safety_tolerance [002] only", R2V, {"safety_tolerance": "6"}),
    ("r2v duration enum [000][001] / string [002]", R2V, {"duration": "8s"}),
    ("extend duration enum [001] / string [D]", EXTEND, {"duration": "7s"}),
    ("extend resolution enum [001] / string [D]", EXTEND, {"resolution": "720p"}),
]

# Length 1 mod 3, so its base64 ends in "==".
_PADDED_PNG = PNG + b"\x00" * ((1 - len(PNG)) % 3)

DROP = object()  # marks a field to remove from the base input


@dataclass(frozen=True)
class Bad:
    """An invalid input: `changes` applied to REQUIRED[endpoint] must give exactly one problem."""

    id: str
    endpoint: str
    changes: dict[str, Any]
    at: str | tuple[str | int, ...]  # input field name, or its path below "input"
    type: str
    ctx: dict[str, Any] = field(default_factory=dict)
    schema_detects: bool = True  # False: the JSON Schema cannot express this rule

    @property
    def loc(self) -> tuple[str | int, ...]:
        return ("input", self.at) if isinstance(self.at, str) else ("input", *self.at)

    def input(self) -> dict[str, Any]:
        result = dict(REQUIRED[self.endpoint])
        for key, value in self.changes.items():
            if value is DROP:
                result.pop(key, None)
            else:
                result[key] = value
        return result


def _generated() -> list[Bad]:
    """One case per endpoint and field for each kind of wrong value."""
    cases: list[Bad] = []
    for endpoint in ALL_ENDPOINTS:
        for name in REQUIRED[endpoint]:
            cases.append(Bad(f"{endpoint} {name} missing", endpoint, {name: DROP}, name, "missing"))
            cases.append(Bad(f"{endpoint} {name} null", endpoint, {name: None}, name, "type"))
        for name, allowed in EXPECTED_ENUMS[endpoint].items():
            cases.append(
                Bad(
                    f"{endpoint} {name} bogus",
                    endpoint,
                    {name: "bogus"},
                    name,
                    "enum",
                    {"allowed": list(allowed)},
                )
            )
            cases.append(
                Bad(
                    f"{endpoint} {name} as number",
                    endpoint,
                    {name: 7},
                    name,
                    "type",
                    {"expected": "string", "allowed": list(allowed)},
                )
            )
        cases.append(Bad(f"{endpoint} prompt number", endpoint, {"prompt": 5}, "prompt", "type"))
        cases.append(
            Bad(
                f"{endpoint} unknown field",
                endpoint,
                {"colour": "red"},
                "colour",
                "unknown_field",
            )
        )
        if endpoint != VEO2:
            for value in (1, "true", None):
                cases.append(
                    Bad(
                        f"{endpoint} generate_audio {value!r}",
                        endpoint,
                        {"generate_audio": value},
                        "generate_audio",
                        "type",
                        {"expected": "boolean"},
                    )
                )
    return cases


BAD_INPUTS: list[Bad] = [
    *_generated(),
    # strings
    Bad("empty prompt", I2V, {"prompt": ""}, "prompt", "too_short"),
    Bad("blank prompt", FLF, {"prompt": " \n\t"}, "prompt", "too_short"),
    Bad(
        "prompt too long",
        R2V,
        {"prompt": "x" * 20_001},
        "prompt",
        "too_long",
        {"max_length": 20_000},
    ),
    Bad(
        "negative_prompt too long",
        EXTEND,
        {"negative_prompt": "x" * 20_001},
        "negative_prompt",
        "too_long",
    ),
    Bad("negative_prompt number", I2V, {"negative_prompt": 3}, "negative_prompt", "type"),
    # integers: strict, no bool, no float, range
    Bad("seed string", I2V, {"seed": "42"}, "seed", "type", {"expected": "integer"}),
    Bad("seed bool", FAST_I2V, {"seed": True}, "seed", "type", {"expected": "integer"}),
    Bad("seed float", FLF, {"seed": 42.0}, "seed", "type", schema_detects=False),
    Bad("seed negative", EXTEND, {"seed": -1}, "seed", "out_of_range", {"min": 0}),
    Bad(
        "seed above uint32",
        FAST_EXTEND,
        {"seed": 2**32},
        "seed",
        "out_of_range",
        {"max": 2**32 - 1},
    ),
    Bad("auto_fix 0", R2V, {"auto_fix": 0}, "auto_fix", "type", {"expected": "boolean"}),
    # fields an endpoint does not have
    Bad("seed on r2v", R2V, {"seed": 1}, "seed", "unknown_field"),
    Bad(
        "negative_prompt on r2v",
        R2V,
        {"negative_prompt": "x"},
        "negative_prompt",
        "unknown_field",
    ),
    Bad("resolution on veo2", VEO2, {"resolution": "720p"}, "resolution", "unknown_field"),
    Bad(
        "generate_audio on veo2",
        VEO2,
        {"generate_audio": False},
        "generate_audio",
        "unknown_field",
    ),
    Bad(
        "typo duraton",
        I2V,
        {"duraton": "8s"},
        "duraton",
        "unknown_field",
        {"suggestion": "duration"},
    ),
    Bad(
        "camelCase imageUrl",
        VEO2,
        {"imageUrl": IMAGE_URL},
        "imageUrl",
        "unknown_field",
        {"suggestion": "image_url"},
    ),
    Bad(
        "alias audio",
        FAST_I2V,
        {"audio": True},
        "audio",
        "unknown_field",
        {"suggestion": "generate_audio"},
    ),
    Bad(
        "image_url on r2v",
        R2V,
        {"image_url": IMAGE_URL},
        "image_url",
        "unknown_field",
        {"suggestion": "image_urls"},
    ),
    # enum values of sibling endpoints
    Bad("auto aspect on r2v", R2V, {"aspect_ratio": "auto"}, "aspect_ratio", "enum"),
    Bad(
        "8s on extend",
        EXTEND,
        {"duration": "8s"},
        "duration",
        "enum",
        {"allowed": ["7s"]},
    ),
    Bad("1080p on extend", FAST_EXTEND, {"resolution": "1080p"}, "resolution", "enum"),
    Bad("4s on r2v", R2V, {"duration": "4s"}, "duration", "enum"),
    Bad("4s on veo2", VEO2, {"duration": "4s"}, "duration", "enum"),
    Bad(
        "auto_prefer_portrait on veo3.1",
        I2V,
        {"aspect_ratio": "auto_prefer_portrait"},
        "aspect_ratio",
        "enum",
    ),
    Bad(
        "4K uppercase",
        I2V,
        {"resolution": "4K"},
        "resolution",
        "enum",
        {"suggestion": "4k"},
    ),
    Bad(
        "duration 8 integer",
        I2V,
        {"duration": 8},
        "duration",
        "type",
        {"suggestion": "8s"},
    ),
    Bad(
        "safety 4 integer",
        R2V,
        {"safety_tolerance": 4},
        "safety_tolerance",
        "type",
        {"suggestion": "4"},
    ),
    # file lists
    Bad("image_urls empty", R2V, {"image_urls": []}, "image_urls", "too_short"),
    Bad(
        "image_urls four",
        R2V,
        {"image_urls": [IMAGE_URL] * 4},
        "image_urls",
        "too_long",
        {"max_length": 3},
    ),
    Bad(
        "image_urls string",
        R2V,
        {"image_urls": IMAGE_URL},
        "image_urls",
        "type",
        {"expected": "array"},
    ),
    Bad(
        "image_urls item number",
        R2V,
        {"image_urls": [IMAGE_URL, 7]},
        ("image_urls", 1),
        "type",
    ),
    Bad(
        "image_urls item scheme",
        R2V,
        {"image_urls": [IMAGE_URL, IMAGE_URL, "ftp://h/x.png"]},
        ("image_urls", 2),
        "url_scheme",
    ),
    Bad(
        "image_urls item gif",
        R2V,
        {"image_urls": [data_uri("image/png", GIF)]},
        ("image_urls", 0),
        "unsupported_media_type",
        schema_detects=False,
    ),
    # URLs
    Bad(
        "ftp url",
        I2V,
        {"image_url": "ftp://cdn.example.com/a.png"},
        "image_url",
        "url_scheme",
        {"allowed": ["http", "https"]},
    ),
    Bad(
        "file url",
        FLF,
        {"first_frame_url": "file:///etc/passwd"},
        "first_frame_url",
        "url_scheme",
    ),
    Bad(
        "relative url",
        FLF,
        {"last_frame_url": "/images/a.png"},
        "last_frame_url",
        "url_scheme",
    ),
    Bad(
        "schemeless url",
        VEO2,
        {"image_url": "cdn.example.com/a.png"},
        "image_url",
        "url_scheme",
    ),
    Bad(
        "javascript url",
        FAST_I2V,
        {"image_url": "javascript:alert(1)"},
        "image_url",
        "url_scheme",
    ),
    Bad(
        "uppercase DATA:",
        I2V,
        {"image_url": "DATA:image/png;base64,iVBORw0KGgo="},
        "image_url",
        "url_scheme",
    ),
    Bad(
        "user:pass in url",
        I2V,
        {"image_url": "https://user:pass@cdn.example.com/a.png"},
        "image_url",
        "url_credentials",
        schema_detects=False,
    ),
    Bad(
        "token@ in url",
        EXTEND,
        {"video_url": "https://token@cdn.example.com/a.mp4"},
        "video_url",
        "url_credentials",
        schema_detects=False,
    ),
    Bad(
        "url without host",
        I2V,
        {"image_url": "https:///a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url without slashes",
        I2V,
        {"image_url": "https:cdn.example.com/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url backslash in host",
        I2V,
        {"image_url": "https://cdn.example.com\\x/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url junk after ipv6",
        I2V,
        {"image_url": "http://[::1]x/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url bad ipv6",
        I2V,
        {"image_url": "http://[zz::1]/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url two colons",
        I2V,
        {"image_url": "http://h:1:2/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url bad port",
        I2V,
        {"image_url": "https://cdn.example.com:99999/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url port zero",
        I2V,
        {"image_url": "https://cdn.example.com:0/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url with space",
        I2V,
        {"image_url": "https://cdn.example.com/a b.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url with newline",
        I2V,
        {"image_url": "https://cdn.example.com/a\n.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url broken ipv6",
        I2V,
        {"image_url": "http://[::1/a.png"},
        "image_url",
        "url_invalid",
        schema_detects=False,
    ),
    Bad(
        "url too long",
        I2V,
        {"image_url": "https://cdn.example.com/" + "a" * 4074},
        "image_url",
        "too_long",
        {"max_length": 4096},
        schema_detects=False,
    ),
    # data URIs: shape and base64
    Bad(
        "data uri not base64",
        I2V,
        {"image_url": "data:image/png,%89PNG"},
        "image_url",
        "invalid_data_uri",
        schema_detects=False,
    ),
    Bad(
        "data uri no comma",
        I2V,
        {"image_url": "data:image/png;base64"},
        "image_url",
        "invalid_data_uri",
        schema_detects=False,
    ),
    Bad(
        "data uri empty payload",
        I2V,
        {"image_url": "data:image/png;base64,"},
        "image_url",
        "invalid_data_uri",
        schema_detects=False,
    ),
    Bad(
        "base64 bad char",
        I2V,
        {"image_url": "data:image/png;base64,iVBORw0KGgo!"},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 missing padding",
        I2V,
        {"image_url": data_uri("image/png", _PADDED_PNG).rstrip("=")},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 padding inside",
        I2V,
        {"image_url": data_uri("image/png", _PADDED_PNG) + "QUJD"},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 excess padding",
        I2V,
        {"image_url": data_uri("image/png", PNG) + "===="},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 line breaks",
        I2V,
        {"image_url": "data:image/png;base64,iVBORw0K\nGgoAAAAN"},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 urlsafe",
        I2V,
        {"image_url": "data:image/png;base64,iVBORw0KGgo-_-_"},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    Bad(
        "base64 non-ascii",
        I2V,
        {"image_url": "data:image/png;base64,iVBORw0KGgoé==="},
        "image_url",
        "invalid_base64",
        schema_detects=False,
    ),
    # data URIs: media types and sniffing
    Bad(
        "declared gif",
        I2V,
        {"image_url": data_uri("image/gif", GIF)},
        "image_url",
        "unsupported_media_type",
        {"declared": "image/gif"},
        schema_detects=False,
    ),
    Bad(
        "declared text",
        VEO2,
        {"image_url": data_uri("text/plain", PNG)},
        "image_url",
        "unsupported_media_type",
        schema_detects=False,
    ),
    Bad(
        "declared nothing",
        I2V,
        {"image_url": "data:;base64,iVBORw0KGgo="},
        "image_url",
        "unsupported_media_type",
        schema_detects=False,
    ),
    Bad(
        "text bytes as png",
        I2V,
        {"image_url": data_uri("image/png", TEXT)},
        "image_url",
        "media_type_mismatch",
        {"declared": "image/png", "detected": None},
        schema_detects=False,
    ),
    Bad(
        "gif bytes as png",
        FLF,
        {"first_frame_url": data_uri("image/png", GIF)},
        "first_frame_url",
        "unsupported_media_type",
        {"detected": "image/gif"},
        schema_detects=False,
    ),
    Bad(
        "mp4 bytes as jpeg",
        VEO2,
        {"image_url": data_uri("image/jpeg", mp4(4.0))},
        "image_url",
        "unsupported_media_type",
        {"detected": "video/mp4"},
        schema_detects=False,
    ),
    Bad(
        "png as video",
        EXTEND,
        {"video_url": data_uri("video/mp4", PNG)},
        "video_url",
        "unsupported_media_type",
        {"detected": "image/png"},
        schema_detects=False,
    ),
    Bad(
        "image type for video",
        EXTEND,
        {"video_url": data_uri("image/png", PNG)},
        "video_url",
        "unsupported_media_type",
        {"declared": "image/png"},
        schema_detects=False,
    ),
    Bad(
        "text as video",
        FAST_EXTEND,
        {"video_url": data_uri("video/mp4", TEXT)},
        "video_url",
        "media_type_mismatch",
        schema_detects=False,
    ),
    # video duration
    Bad(
        "video 8.2 s",
        EXTEND,
        {"video_url": data_uri("video/mp4", mp4(8.2))},
        "video_url",
        "video_duration_too_long",
        {"max_duration_s": 8.0, "duration_s": 8.2},
        schema_detects=False,
    ),
    Bad(
        "video 20 s mvhd v1",
        FAST_EXTEND,
        {"video_url": data_uri("video/mp4", mp4(20.0, version=1))},
        "video_url",
        "video_duration_too_long",
        schema_detects=False,
    ),
    Bad(
        "video 9 s moov first",
        EXTEND,
        {"video_url": data_uri("video/mp4", mp4(9.0, moov_last=False))},
        "video_url",
        "video_duration_too_long",
        schema_detects=False,
    ),
    Bad(
        "quicktime 12 s",
        EXTEND,
        {"video_url": data_uri("video/quicktime", mp4(12.0, brand=b"qt  "))},
        "video_url",
        "video_duration_too_long",
        schema_detects=False,
    ),
]
