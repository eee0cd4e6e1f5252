"""parse_job_request: what is accepted, what is refused, and how precisely it says so."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from service.catalog import (
    ENDPOINTS,
    IMAGE_MAX_BYTES,
    SEED_MAX,
    SUPPORTED_ENDPOINTS,
    VIDEO_MAX_BYTES,
)
from service.validation import (
    CALLBACK_URL_MAX_CHARS,
    METADATA_MAX_BYTES,
    InputProblem,
    JobRequest,
    RequestInvalid,
    parse_job_request,
    validate_input,
)
from tests.catalog.cases import (
    ALL_ENDPOINTS,
    BAD_INPUTS,
    EXPECTED_ENUMS,
    EXTEND,
    EXTEND_ENDPOINTS,
    FAST_EXTEND,
    FLF,
    FULL_INPUTS,
    I2V,
    IMAGE_ENDPOINTS,
    IMAGE_URL,
    R2V,
    REQUIRED,
    UNION_VARIANTS,
    VEO2,
    Bad,
)
from tests.catalog.media import (
    GIF,
    HEIC,
    JPEG,
    MKV,
    PNG,
    WEBM,
    WEBP,
    box,
    data_uri,
    mp4,
    mvhd,
    oversize_data_uri,
    padded,
)


def job(endpoint: str, input: Any, **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "input": input, **extra}


def accept(body: object, **kwargs: Any) -> JobRequest:
    try:
        return parse_job_request(body, **kwargs)
    except RequestInvalid as exc:
        pytest.fail(f"refused a valid request: {[p.as_dict() for p in exc.problems]}")


def refuse(body: object, **kwargs: Any) -> list[InputProblem]:
    with pytest.raises(RequestInvalid) as caught:
        parse_job_request(body, **kwargs)
    problems = caught.value.problems
    assert problems
    for problem in problems:
        # Every problem must be JSON-ready and readable, whatever produced it.
        json.dumps(problem.as_dict())
        assert problem.msg[-1] in ".?", problem.msg
    return problems


def refuse_one(body: object, **kwargs: Any) -> InputProblem:
    problems = refuse(body, **kwargs)
    assert len(problems) == 1, [p.as_dict() for p in problems]
    return problems[0]


def assert_ctx(problem: InputProblem, expected: dict[str, Any]) -> None:
    ctx = dict(problem.ctx or {})
    for key, value in expected.items():
        assert ctx.get(key) == value, (key, ctx)


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_catalog_example_is_accepted(endpoint: str) -> None:
    body = job(endpoint, dict(ENDPOINTS[endpoint].example))
    assert accept(body).endpoint == endpoint


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_every_field_is_accepted_with_a_valid_value(endpoint: str) -> None:
    assert set(FULL_INPUTS[endpoint]) == set(ENDPOINTS[endpoint].field_map)
    accept(job(endpoint, FULL_INPUTS[endpoint]))


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_input_is_passed_through_unchanged_without_defaults(endpoint: str) -> None:
    payload = dict(REQUIRED[endpoint])
    result = accept(job(endpoint, payload))
    assert result.input is payload
    assert result.input == REQUIRED[endpoint]
    assert result.callback_url is None and result.metadata is None
    assert result.spec is ENDPOINTS[endpoint]


@pytest.mark.parametrize(
    ("endpoint", "name", "value"),
    [(e, name, v) for e, enums in EXPECTED_ENUMS.items() for name, vs in enums.items() for v in vs],
)
def test_every_enum_value_is_accepted(endpoint: str, name: str, value: str) -> None:
    accept(job(endpoint, {**REQUIRED[endpoint], name: value}))


@pytest.mark.parametrize(
    ("endpoint", "changes"), [c[1:] for c in UNION_VARIANTS], ids=[c[0] for c in UNION_VARIANTS]
)
def test_values_documented_by_only_some_sources_are_accepted(
    endpoint: str, changes: dict[str, Any]
) -> None:
    accept(job(endpoint, {**REQUIRED[endpoint], **changes}))


@pytest.mark.parametrize(
    "value",
    [
        "https://cdn.example.com/a.png?X-Amz-Signature=abc&X-Amz-Expires=600",
        "HTTP://CDN.EXAMPLE.COM/A.PNG",
        "http://[2001:db8::1]:8080/a.png",
        "https://cdn.example.com:8443/a.png#frag",
        "https://cdn.example.com?sig=1",
        "https://例え.jp/画像.png",
        "https://cdn.example.com/" + "a" * (4096 - 24),
        data_uri("image/png", PNG),
        data_uri("image/jpeg", JPEG),
        data_uri("image/jpg", JPEG),
        data_uri("IMAGE/PNG", PNG),
        data_uri("image/webp", WEBP),
        data_uri("image/jpeg", PNG),  # mislabelled, but both are accepted images
        data_uri("image/png", padded(PNG, IMAGE_MAX_BYTES)),
    ],
    ids=lambda v: v[:40],
)
@pytest.mark.parametrize("endpoint", IMAGE_ENDPOINTS)
def test_image_file_forms_are_accepted(endpoint: str, value: str) -> None:
    accept(job(endpoint, {**REQUIRED[endpoint], "image_url": value}))


@pytest.mark.parametrize(
    "video",
    [
        data_uri("video/mp4", mp4(7.0)),
        data_uri("video/mp4", mp4(8.0)),
        data_uri("video/mp4", mp4(8.05)),  # container slack
        data_uri("video/mp4", mp4(8.0, version=1, moov_last=False)),
        data_uri("video/mp4", mp4(None)),  # fragmented: duration unknown
        data_uri("video/quicktime", mp4(6.0, brand=b"qt  ")),
        data_uri("video/quicktime", mp4(6.0)),  # an MP4 labelled QuickTime: same family
        data_uri("video/webm", WEBM),
        data_uri("video/mp4", padded(mp4(5.0, moov_last=False), VIDEO_MAX_BYTES)),
    ],
    ids=lambda v: v[:30],
)
@pytest.mark.parametrize("endpoint", EXTEND_ENDPOINTS)
def test_video_file_forms_are_accepted(endpoint: str, video: str) -> None:
    accept(job(endpoint, {**REQUIRED[endpoint], "video_url": video}))


def test_video_duration_is_found_behind_a_64_bit_box() -> None:
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isom")
    # Size 1 announces a 64-bit "largesize", as muxers write for media data over 4 GiB.
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 32) + b"\x00" * 32
    video = ftyp + mdat + box(b"moov", mvhd(12 * 600, 600))
    body = job(EXTEND, {**REQUIRED[EXTEND], "video_url": data_uri("video/mp4", video)})
    problem = refuse_one(body)
    assert problem.type == "video_duration_too_long"
    assert_ctx(problem, {"duration_s": 12.0})


def test_optional_top_level_fields_are_returned() -> None:
    result = accept(
        job(
            I2V,
            REQUIRED[I2V],
            callback_url="https://app.example.com/hooks/veo?job=1",
            metadata={"user": 7},
        )
    )
    assert result.callback_url == "https://app.example.com/hooks/veo?job=1"
    assert result.metadata == {"user": 7}


def test_null_callback_url_and_metadata_mean_absent() -> None:
    result = accept(job(I2V, REQUIRED[I2V], callback_url=None, metadata=None))
    assert result.callback_url is None and result.metadata is None


# --- refused: one problem per case ------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_invalid_input_is_refused_with_precise_location_and_type(case: Bad) -> None:
    problem = refuse_one(job(case.endpoint, case.input()))
    assert (problem.loc, problem.type) == (case.loc, case.type), problem.msg
    assert_ctx(problem, case.ctx)


@pytest.mark.parametrize("case", BAD_INPUTS[:40], ids=lambda c: c.id)
def test_validate_input_reports_the_same_problems(case: Bad) -> None:
    problems = validate_input(ENDPOINTS[case.endpoint], case.input())
    assert [(p.loc, p.type) for p in problems] == [(case.loc, case.type)]


def test_enum_problem_lists_the_allowed_values_in_the_message() -> None:
    problem = refuse_one(job(I2V, {**REQUIRED[I2V], "duration": "10s"}))
    assert '"4s", "6s", "8s"' in problem.msg and '"10s"' in problem.msg


def test_type_problem_names_expected_type_allowed_values_and_a_suggestion() -> None:
    problem = refuse_one(job(I2V, {**REQUIRED[I2V], "duration": 8}))
    assert "string" in problem.msg and "integer 8" in problem.msg
    assert '"4s", "6s", "8s"' in problem.msg and 'Did you mean "8s"?' in problem.msg


def test_null_input_field_hints_at_omitting_it() -> None:
    problem = refuse_one(job(I2V, {**REQUIRED[I2V], "seed": None}))
    assert problem.type == "type" and "Omit the field" in problem.msg


def test_field_of_another_endpoint_names_where_it_is_accepted() -> None:
    problem = refuse_one(job(R2V, {**REQUIRED[R2V], "seed": 1}))
    assert problem.type == "unknown_field"
    assert I2V in (problem.ctx or {})["accepted_by"]
    assert "not accepted by fal-ai/veo3.1/reference-to-video" in problem.msg


def test_unknown_field_without_close_match_lists_known_fields() -> None:
    problem = refuse_one(job(VEO2, {**REQUIRED[VEO2], "zzz": 1}))
    assert "suggestion" not in (problem.ctx or {})
    assert (problem.ctx or {})["known"] == ["prompt", "image_url", "aspect_ratio", "duration"]


@pytest.mark.parametrize(
    ("seed", "ok"), [(0, True), (SEED_MAX, True), (-1, False), (SEED_MAX + 1, False)]
)
def test_seed_range_bounds(seed: int, ok: bool) -> None:
    body = job(I2V, {**REQUIRED[I2V], "seed": seed})
    if ok:
        accept(body)
    else:
        assert refuse_one(body).type == "out_of_range"


@pytest.mark.parametrize(("length", "ok"), [(20_000, True), (20_001, False)])
def test_prompt_length_bound(length: int, ok: bool) -> None:
    body = job(FLF, {**REQUIRED[FLF], "prompt": "p" * length})
    if ok:
        accept(body)
    else:
        assert refuse_one(body).type == "too_long"


def test_surplus_list_items_are_not_checked() -> None:
    images = ["ftp://x/0.png", IMAGE_URL, IMAGE_URL, "ftp://x/3.png", "ftp://x/4.png"]
    problems = refuse(job(R2V, {**REQUIRED[R2V], "image_urls": images}))
    assert [(p.loc, p.type) for p in problems] == [
        (("input", "image_urls"), "too_long"),
        (("input", "image_urls", 0), "url_scheme"),
    ]


def test_every_bad_list_item_is_reported_with_its_index() -> None:
    images = [data_uri("image/png", GIF), IMAGE_URL, "https://u:p@h/x.png"]
    problems = refuse(job(R2V, {**REQUIRED[R2V], "image_urls": images}))
    assert [p.loc for p in problems] == [("input", "image_urls", 0), ("input", "image_urls", 2)]


# --- data URIs: size, before any decoding -----------------------------------------------------


def test_image_one_byte_over_8_mib_is_refused() -> None:
    problem = refuse_one(
        job(
            VEO2,
            {**REQUIRED[VEO2], "image_url": oversize_data_uri("image/png", IMAGE_MAX_BYTES + 1)},
        )
    )
    assert problem.type == "file_too_large"
    assert_ctx(problem, {"max_bytes": 8 * 1024 * 1024, "size_bytes": IMAGE_MAX_BYTES + 1})


def test_oversize_is_decided_from_length_alone() -> None:
    # 50 MiB of characters that are not even base64: had the payload been scanned or decoded
    # first, the answer would be invalid_base64.
    huge = oversize_data_uri("image/jpeg", 50 * 1024 * 1024, fill="!")
    problem = refuse_one(job(I2V, {**REQUIRED[I2V], "image_url": huge}))
    assert problem.type == "file_too_large"


def test_video_over_its_limit_is_refused() -> None:
    video = oversize_data_uri("video/mp4", VIDEO_MAX_BYTES + 3)
    problem = refuse_one(job(FAST_EXTEND, {**REQUIRED[FAST_EXTEND], "video_url": video}))
    assert problem.type == "file_too_large"
    assert_ctx(problem, {"max_bytes": VIDEO_MAX_BYTES})


def test_corruption_deep_inside_a_large_payload_is_found() -> None:
    good = data_uri("image/png", padded(PNG, 6 * 1024 * 1024))
    middle = len(good) // 2
    bad = good[:middle] + "*" + good[middle + 1 :]
    assert refuse_one(job(I2V, {**REQUIRED[I2V], "image_url": bad})).type == "invalid_base64"


@pytest.mark.parametrize(
    ("payload", "declared", "detected"),
    [
        (GIF, "image/png", "image/gif"),
        (HEIC, "image/jpeg", "image/heic"),
        (MKV, "video/webm", "video/x-matroska"),
    ],
)
def test_sniffed_format_outside_the_accepted_set_is_named(
    payload: bytes, declared: str, detected: str
) -> None:
    endpoint, name = (EXTEND, "video_url") if declared.startswith("video/") else (I2V, "image_url")
    problem = refuse_one(job(endpoint, {**REQUIRED[endpoint], name: data_uri(declared, payload)}))
    assert problem.type == "unsupported_media_type"
    assert_ctx(problem, {"declared": declared, "detected": detected})


# --- top level --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "text", 42, True])
def test_non_object_body_is_refused_at_the_root(body: object) -> None:
    problem = refuse_one(body)
    assert (problem.loc, problem.type) == ((), "type")


def test_missing_endpoint_and_input_are_both_reported() -> None:
    problems = refuse({})
    assert [(p.loc, p.type) for p in problems] == [
        (("endpoint",), "missing"),
        (("input",), "missing"),
    ]


@pytest.mark.parametrize("endpoint", [None, 5, ["fal-ai/veo2/image-to-video"]])
def test_endpoint_of_wrong_type_is_refused(endpoint: object) -> None:
    problem = refuse_one({"endpoint": endpoint, "input": REQUIRED[VEO2]})
    assert (problem.loc, problem.type) == (("endpoint",), "type")


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
@pytest.mark.parametrize("input", [None, [], "prompt", 3])
def test_non_object_input_is_refused(endpoint: str, input: object) -> None:
    problem = refuse_one(job(endpoint, input))
    assert (problem.loc, problem.type) == (("input",), "type")


def test_unknown_endpoint_lists_the_supported_ones_and_suggests_the_closest() -> None:
    problem = refuse_one(job("fal-ai/veo3.1/image-to-vidoe", {"anything": 1}))
    assert (problem.loc, problem.type) == (("endpoint",), "unknown_endpoint")
    assert_ctx(problem, {"supported": list(SUPPORTED_ENDPOINTS), "suggestion": I2V})
    assert all(e in problem.msg for e in SUPPORTED_ENDPOINTS)


def test_unknown_endpoint_still_requires_an_object_input() -> None:
    problems = refuse(job("fal-ai/kling/video", "not an object"))
    assert [(p.loc, p.type) for p in problems] == [
        (("endpoint",), "unknown_endpoint"),
        (("input",), "type"),
    ]


@pytest.mark.parametrize(
    "patterns", [["fal-ai/flux/*"], ("fal-ai/kling/*", "fal-ai/flux/*"), "fal-ai/flux/*"]
)
def test_pass_through_endpoint_matching_a_pattern_is_accepted_as_is(patterns: Any) -> None:
    payload = {"prompt": 1, "whatever": [None, {"x": 2}]}
    result = accept(job("fal-ai/flux/dev", payload), allowed_endpoint_patterns=patterns)
    assert result.endpoint == "fal-ai/flux/dev"
    assert result.input is payload
    assert result.spec is None


def test_pass_through_input_must_be_an_object() -> None:
    problem = refuse_one(job("fal-ai/flux/dev", ["x"]), allowed_endpoint_patterns=["fal-ai/*"])
    assert (problem.loc, problem.type) == (("input",), "type")


def test_endpoint_not_matching_any_pattern_is_unknown() -> None:
    problem = refuse_one(job("fal-ai/kling/video", {}), allowed_endpoint_patterns=["fal-ai/flux/*"])
    assert problem.type == "unknown_endpoint"
    assert_ctx(problem, {"allowed_patterns": ["fal-ai/flux/*"]})


def test_patterns_are_case_sensitive() -> None:
    problem = refuse_one(job("FAL-AI/flux/dev", {}), allowed_endpoint_patterns=["fal-ai/*"])
    assert problem.type == "unknown_endpoint"


@pytest.mark.parametrize(
    "endpoint",
    [
        "fal-ai/../admin",
        "fal-ai/flux/dev?x=1",
        "fal-ai/flux/dev#frag",
        "fal-ai/%2e%2e/x",
        "fal-ai/",
        "fal-ai/" + "a" * 200,
    ],
)
def test_pass_through_endpoint_ids_that_could_bend_the_queue_url_are_refused(endpoint: str) -> None:
    problem = refuse_one(job(endpoint, {}), allowed_endpoint_patterns=["fal-ai/*"])
    assert (problem.loc, problem.type) == (("endpoint",), "invalid_endpoint")


def test_catalog_endpoints_are_validated_even_when_a_pattern_matches_them() -> None:
    problem = refuse_one(
        job(I2V, {**REQUIRED[I2V], "duration": 8}), allowed_endpoint_patterns=["*"]
    )
    assert problem.loc == ("input", "duration")


@pytest.mark.parametrize(
    ("url", "type_"),
    [
        ("ftp://app.example.com/hook", "url_scheme"),
        ("/hooks/veo", "url_scheme"),
        ("https://user:secret@app.example.com/hook", "url_credentials"),
        ("https://", "url_invalid"),
        ("https://app.example.com/" + "h" * CALLBACK_URL_MAX_CHARS, "too_long"),
        (42, "type"),
    ],
)
def test_bad_callback_url_is_refused(url: object, type_: str) -> None:
    problem = refuse_one(job(I2V, REQUIRED[I2V], callback_url=url))
    assert (problem.loc, problem.type) == (("callback_url",), type_)


def test_callback_url_at_the_length_limit_is_accepted() -> None:
    url = "https://app.example.com/"
    url += "h" * (CALLBACK_URL_MAX_CHARS - len(url))
    assert accept(job(I2V, REQUIRED[I2V], callback_url=url)).callback_url == url


@pytest.mark.parametrize(
    ("metadata", "type_"),
    [
        ([1, 2], "type"),
        ("text", "type"),
        ({"x": "é" * 8193}, "too_large"),
    ],
    ids=["array", "string", "over 16 KiB in UTF-8"],
)
def test_bad_metadata_is_refused(metadata: object, type_: str) -> None:
    problem = refuse_one(job(I2V, REQUIRED[I2V], metadata=metadata))
    assert (problem.loc, problem.type) == (("metadata",), type_)


def test_a_non_finite_number_in_metadata_is_refused_at_its_path() -> None:
    problem = refuse_one(job(I2V, REQUIRED[I2V], metadata={"x": float("nan")}))
    assert (problem.loc, problem.type) == (("metadata", "x"), "not_finite")


def test_metadata_of_exactly_16_kib_is_accepted() -> None:
    metadata = {"k": ""}
    metadata["k"] = "v" * (METADATA_MAX_BYTES - len(json.dumps(metadata, separators=(",", ":"))))
    assert accept(job(I2V, REQUIRED[I2V], metadata=metadata)).metadata == metadata


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("webhook_url", "callback_url"),
        ("webhookUrl", "callback_url"),
        ("arguments", "input"),
        ("callbackUrl", "callback_url"),
        ("metdata", "metadata"),
    ],
)
def test_unknown_top_level_field_suggests_ours(key: str, suggestion: str) -> None:
    problem = refuse_one(job(I2V, REQUIRED[I2V], **{key: "x"}))
    assert (problem.loc, problem.type) == ((key,), "unknown_field")
    assert_ctx(problem, {"suggestion": suggestion})


def test_all_problems_are_reported_at_once_in_body_order() -> None:
    body = {
        "endpoint": I2V,
        "input": {"prompt": "", "image_url": "ftp://x/a.png", "duration": 8, "bogus": 1},
        "callback_url": "ftp://cb",
        "metadata": [],
        "extra": True,
    }
    problems = refuse(body)
    assert [(p.loc, p.type) for p in problems] == [
        (("input", "prompt"), "too_short"),
        (("input", "image_url"), "url_scheme"),
        (("input", "duration"), "type"),
        (("input", "bogus"), "unknown_field"),
        (("callback_url",), "url_scheme"),
        (("metadata",), "type"),
        (("extra",), "unknown_field"),
    ]


def test_missing_required_fields_are_all_listed() -> None:
    problems = refuse(job(FLF, {"aspect_ratio": "auto"}))
    assert [p.loc for p in problems] == [
        ("input", "prompt"),
        ("input", "first_frame_url"),
        ("input", "last_frame_url"),
    ]
    assert {p.type for p in problems} == {"missing"}


def test_missing_required_field_is_found_among_many_unknown_ones() -> None:
    problems = refuse(job(VEO2, {"prompt": "p", "a": 1, "b": 2, "c": 3, "d": 4}))
    assert (("input", "image_url"), "missing") in [(p.loc, p.type) for p in problems]


def test_request_invalid_message_summarises_the_problems() -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_job_request(job(I2V, {"prompt": 1}))
    assert str(caught.value).startswith("input.prompt must be a string")
    assert str(caught.value).endswith("(and 1 more)")


def test_problem_as_dict_omits_empty_ctx() -> None:
    assert InputProblem(("input",), "m.", "missing").as_dict() == {
        "loc": ["input"],
        "msg": "m.",
        "type": "missing",
    }
    problem = InputProblem(("input", "image_urls", 2), "m.", "enum", {"allowed": ["a"]})
    assert problem.as_dict() == {
        "loc": ["input", "image_urls", 2],
        "msg": "m.",
        "type": "enum",
        "ctx": {"allowed": ["a"]},
    }
