"""Intake validation of `POST /v1/jobs`: refuse at the door what fal would refuse after billing.

`parse_job_request` checks a decoded JSON body against the catalog (`service.catalog`) and
either returns a `JobRequest` or raises `RequestInvalid` listing every problem found, each
with the path of the offending value from the body root (`("input", "image_urls", 2)`).

Rules beyond the catalog's declarations, and why:

- JSON types are strict: `"8s"` not `8`, `true` not `1`, a seed is an integer and not a
  boolean. fal does not publish how lenient its own coercion is; forwarding only what its
  schema documents is the only way to be sure it is accepted.
- `null` is refused for input fields (omit the field to get fal's default), accepted for
  the optional top-level `callback_url` and `metadata`.
- File values are http(s) URLs (a host, no credentials, at most 4096 characters; fal must
  be able to download them) or `data:<media type>;base64,<payload>` URIs, checked by
  `service.files` (size, base64, sniffed type, MP4 duration) without decoding them whole.
- Whatever will be stored, encoded or sent must round-trip (`service.plainjson`): nesting at
  most 64 deep, integers of at most 32 digits, finite numbers, strings that are text (no lone
  surrogates). These are checked first, over the whole body.

Nothing here builds pydantic models or decodes whole files: validating a typical request costs
a few microseconds, three 8 MiB data URIs a few tens of milliseconds.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service import plainjson
from service.catalog import (
    ENDPOINTS,
    SUPPORTED_ENDPOINTS,
    URL_MAX_CHARS,
    EndpointSpec,
    FieldSpec,
    FileSpec,
    input_json_schema,
    schema_name,
)
from service.files import data_uri_problem
from service.jobs import CALLBACK_EVENT_TYPES, DEFAULT_CALLBACK_EVENTS

Loc = tuple[str | int, ...]
"""Path of a value from the request body root, e.g. ("input", "image_urls", 2)."""

CALLBACK_URL_MAX_CHARS = 2048
METADATA_MAX_BYTES = 16 * 1024
ENDPOINT_ID_MAX_CHARS = 200

_TOP_LEVEL_FIELDS = ("endpoint", "input", "callback_url", "callback_events", "metadata")
_TOP_LEVEL_FIELD_SET = frozenset(_TOP_LEVEL_FIELDS)
# Names clients commonly use for our fields (fal's own client calls the callback
# `webhookUrl` and the input `arguments`); difflib alone would not connect them.
_TOP_LEVEL_ALIASES = {
    "webhook_url": "callback_url",
    "webhookurl": "callback_url",
    "webhook": "callback_url",
    "callback": "callback_url",
    "events": "callback_events",
    "webhook_events": "callback_events",
    "arguments": "input",
    "args": "input",
    "model": "endpoint",
    "model_id": "endpoint",
    "endpoint_id": "endpoint",
    "application": "endpoint",
    "meta": "metadata",
}
_INPUT_ALIASES = {
    "audio": "generate_audio",
    "with_audio": "generate_audio",
    "enable_audio": "generate_audio",
    "length": "duration",
    "ratio": "aspect_ratio",
    "negative": "negative_prompt",
    "image": "image_url",
    "images": "image_urls",
    "reference_images": "image_urls",
    "first_frame": "first_frame_url",
    "last_frame": "last_frame_url",
    "video": "video_url",
}
# Pass-through ids become part of the queue URL: segments must be plain names, so that
# neither "..", "?", "#" nor "%2F" can steer the request to another fal path.
_ENDPOINT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)+")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")
_SIMPLE_HTTP_URL_RE = re.compile(
    r'[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\[\]\\<>"{}|^`:]+(?::(\d{1,5}))?(?:[/?#]|\Z)'
)
_URL_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_URL_AUTHORITY_RE = re.compile(r"[^/?#]*")
# Characters no registered name may hold; a backslash is also what some fetchers read as "/".
_URL_BAD_HOST_RE = re.compile(r'[\\<>"{}|^`\[\]]')
# Compact and strict, reused because building an encoder per call costs more than encoding
# a small object.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One reason a request is refused, in the spirit of fal's and pydantic's error items.

    `loc` is the path from the request body root, `msg` a sentence a developer can act on,
    `type` a stable machine key (branch on it, never on `msg`), `ctx` structured extras.
    """

    loc: tuple[str | int, ...]
    msg: str
    type: str
    ctx: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for an error response."""
        item: dict[str, Any] = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        if self.ctx:
            item["ctx"] = dict(self.ctx)
        return item


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A validated job request. `input` is forwarded to fal as given: no defaults filled in."""

    endpoint: str
    input: dict[str, Any]
    callback_url: str | None
    metadata: dict[str, Any] | None
    # The event types to call back for, in CALLBACK_EVENT_TYPES order (default: terminal).
    callback_events: tuple[str, ...] = DEFAULT_CALLBACK_EVENTS

    @property
    def spec(self) -> EndpointSpec | None:
        """The catalog entry, or None for a pass-through endpoint."""
        return ENDPOINTS.get(self.endpoint)


class RequestInvalid(Exception):
    """The request body is invalid; `problems` lists every problem found, in body order."""

    def __init__(self, problems: Sequence[InputProblem]) -> None:
        self.problems = list(problems)
        summary = self.problems[0].msg if self.problems else "invalid request"
        extra = len(self.problems) - 1
        super().__init__(summary + (f" (and {extra} more)" if extra > 0 else ""))


def parse_job_request(body: object, *, allowed_endpoint_patterns: Sequence[str] = ()) -> JobRequest:
    """Validate a decoded JSON body of `POST /v1/jobs` and return the job it describes.

    `allowed_endpoint_patterns` are fnmatch globs (case-sensitive) of endpoints outside the
    catalog to pass through; their `input` is only checked to be a JSON object.

    Raises RequestInvalid listing every problem found.
    """
    if not isinstance(body, dict):
        raise RequestInvalid([_type_problem((), "object", body, detail=" (the job request)")])
    if isinstance(allowed_endpoint_patterns, str):
        allowed_endpoint_patterns = (allowed_endpoint_patterns,)
    # First what could not be stored or answered at all (too deep, lone surrogates, huge or
    # non-finite numbers): such a body is hostile, and the checks below assume plain values.
    unkeepable = plainjson.issues(body)
    if unkeepable:
        raise RequestInvalid(
            [InputProblem(issue.path, issue.message, issue.type) for issue in unkeepable]
        )
    problems: list[InputProblem] = []

    endpoint = body.get("endpoint")
    spec: EndpointSpec | None = None
    passthrough = False
    if "endpoint" not in body:
        problems.append(_missing(("endpoint",), "the fal endpoint id, e.g. " + _EXAMPLE_ID))
    elif type(endpoint) is not str:
        problems.append(
            _type_problem(("endpoint",), "string", endpoint, detail=" (a fal endpoint id)")
        )
    else:
        spec = ENDPOINTS.get(endpoint)
        if spec is None:
            passthrough = _check_passthrough(endpoint, allowed_endpoint_patterns, problems)

    raw_input = body.get("input")
    if "input" not in body:
        problems.append(_missing(("input",), "the fal input object"))
    elif not isinstance(raw_input, dict):
        problems.append(_type_problem(("input",), "object", raw_input, detail=" (the fal input)"))
    elif spec is not None:
        _check_input(spec, raw_input, ("input",), problems)

    callback_url = body.get("callback_url")
    if callback_url is not None:
        if type(callback_url) is not str:
            problems.append(
                _type_problem(("callback_url",), "string", callback_url, detail=" (an http(s) URL)")
            )
        else:
            _check_url(callback_url, ("callback_url",), CALLBACK_URL_MAX_CHARS, problems)

    callback_events = _check_callback_events(body, problems)

    metadata = body.get("metadata")
    if metadata is not None:
        _check_metadata(metadata, problems)

    for key in body:
        if key not in _TOP_LEVEL_FIELD_SET:
            problems.append(_unknown_field((key,), key, _TOP_LEVEL_FIELDS, _TOP_LEVEL_ALIASES))

    if problems:
        raise RequestInvalid(problems)
    assert isinstance(endpoint, str) and isinstance(raw_input, dict)
    assert spec is not None or passthrough
    return JobRequest(endpoint, raw_input, callback_url, metadata, callback_events)


def validate_input(spec: EndpointSpec, input: object) -> list[InputProblem]:
    """Every problem of `input` for the catalog endpoint `spec` (locs start at "input")."""
    problems: list[InputProblem] = []
    if not isinstance(input, dict):
        problems.append(_type_problem(("input",), "object", input, detail=" (the fal input)"))
    else:
        _check_input(spec, input, ("input",), problems)
    return problems


def job_request_json_schema(
    *, input_ref_template: str | None = None, passthrough: bool = False
) -> dict[str, Any]:
    """JSON Schema 2020-12 of the `POST /v1/jobs` body, for the OpenAPI document.

    With `input_ref_template` (e.g. "#/components/schemas/{name}") each endpoint's input is a
    `$ref` to the component named by `catalog.schema_name`; otherwise inputs are inlined.
    With `passthrough`, endpoints outside the catalog are allowed with any object as input.
    """
    variants: list[dict[str, Any]] = []
    for endpoint_id, spec in ENDPOINTS.items():
        input_schema: dict[str, Any] = (
            {"$ref": input_ref_template.format(name=schema_name(spec))}
            if input_ref_template
            else input_json_schema(spec, include_dialect=False)
        )
        variants.append(
            {
                "title": endpoint_id,
                "properties": {"endpoint": {"const": endpoint_id}, "input": input_schema},
            }
        )
    endpoint_schema: dict[str, Any] = {
        "type": "string",
        "description": "The fal endpoint id to submit to.",
        "examples": list(SUPPORTED_ENDPOINTS),
    }
    if passthrough:
        variants.append(
            {
                "title": "pass-through",
                "description": "An endpoint allowed by the operator's ALLOWED_ENDPOINTS patterns.",
                "properties": {"endpoint": {"not": {"enum": list(SUPPORTED_ENDPOINTS)}}},
            }
        )
        endpoint_schema.update(
            maxLength=ENDPOINT_ID_MAX_CHARS, pattern=f"^{_ENDPOINT_ID_RE.pattern}$"
        )
    else:
        endpoint_schema["enum"] = list(SUPPORTED_ENDPOINTS)
    return {
        "type": "object",
        "required": ["endpoint", "input"],
        "additionalProperties": False,
        "properties": {
            "endpoint": endpoint_schema,
            "input": {"type": "object", "description": "The fal input for the endpoint."},
            "callback_url": {
                "type": ["string", "null"],
                "maxLength": CALLBACK_URL_MAX_CHARS,
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
                "description": "Absolute http(s) URL without credentials, notified on completion.",
            },
            "callback_events": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": list(CALLBACK_EVENT_TYPES)},
                "default": list(DEFAULT_CALLBACK_EVENTS),
                "description": "The job's changes to call back for (with callback_url). "
                "job.in_progress is only sent where vidhook learns it (a status check at fal, "
                "a webhook without its result): fal's webhook announces only the end.",
            },
            "metadata": {
                "type": ["object", "null"],
                "description": (
                    f"Opaque JSON object echoed back, at most {METADATA_MAX_BYTES} bytes as "
                    "compact UTF-8 JSON."
                ),
            },
        },
        "oneOf": variants,
    }


# --- input ----------------------------------------------------------------------------------


def _check_input(
    spec: EndpointSpec, input: dict[str, Any], loc: Loc, out: list[InputProblem]
) -> None:
    fields = spec.field_map
    for key, value in input.items():
        field = fields.get(key)
        if field is None:
            out.append(_unknown_input_field(spec, (*loc, key), key))
        else:
            _CHECKERS[field.kind](field, value, (*loc, key), out)
    for name in spec.required_fields:
        if name not in input:
            out.append(_missing((*loc, name), _first_sentence(fields[name].description)))


def _check_string(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    if type(value) is not str:
        out.append(_type_problem(loc, "string", value))
    elif field.non_blank and (not value or value.isspace()):
        out.append(
            _problem(
                loc,
                "too_short",
                f"{_where(loc)} must not be empty or only whitespace.",
                {"min_length": 1},
            )
        )
    elif field.max_length is not None and len(value) > field.max_length:
        out.append(
            _problem(
                loc,
                "too_long",
                f"{_where(loc)} is {len(value)} characters; at most {field.max_length} allowed.",
                {"max_length": field.max_length},
            )
        )


def _check_enum(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    if type(value) is str and value in field.enum:
        return
    allowed = ", ".join(f'"{v}"' for v in field.enum)
    suggestion = _enum_suggestion(field.enum, value)
    hint = f' Did you mean "{suggestion}"?' if suggestion else ""
    ctx: dict[str, Any] = {"allowed": list(field.enum)}
    if suggestion:
        ctx["suggestion"] = suggestion
    if type(value) is str:
        msg = f"{_where(loc)} must be one of {allowed}; got {json.dumps(value)}.{hint}"
        out.append(_problem(loc, "enum", msg, ctx))
    else:
        msg = f"{_where(loc)} must be a string, one of {allowed}; got {_describe(value)}.{hint}"
        out.append(_problem(loc, "type", msg, {"expected": "string", **ctx}))


def _check_boolean(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    if type(value) is not bool:
        out.append(_type_problem(loc, "boolean", value, detail=" (true or false)"))


def _check_integer(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    if type(value) is not int:
        out.append(_type_problem(loc, "integer", value))
        return
    low, high = field.minimum, field.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        out.append(
            _problem(
                loc,
                "out_of_range",
                f"{_where(loc)} must be between {low} and {high}; got {value}.",
                {"min": low, "max": high},
            )
        )


def _check_file_field(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    assert field.file is not None
    _check_file(field.file, value, loc, out)


def _check_file_list(field: FieldSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    assert field.file is not None
    if type(value) is not list:
        detail = f" of {field.file.kind} URLs or data URIs"
        out.append(_type_problem(loc, "array", value, detail=detail))
        return
    if len(value) < field.min_items:
        out.append(
            _problem(
                loc,
                "too_short",
                f"{_where(loc)} needs at least {field.min_items} item(s); got {len(value)}.",
                {"min_length": field.min_items},
            )
        )
    items = value
    if field.max_items is not None and len(value) > field.max_items:
        out.append(
            _problem(
                loc,
                "too_long",
                f"{_where(loc)} takes at most {field.max_items} items; got {len(value)}.",
                {"max_length": field.max_items},
            )
        )
        # The client has to drop items anyway; checking the surplus only lengthens the answer.
        items = value[: field.max_items]
    for index, item in enumerate(items):
        _check_file(field.file, item, (*loc, index), out)


_Checker = Callable[[FieldSpec, object, Loc, list[InputProblem]], None]
_CHECKERS: Mapping[str, _Checker] = {
    "string": _check_string,
    "enum": _check_enum,
    "boolean": _check_boolean,
    "integer": _check_integer,
    "file": _check_file_field,
    "file_list": _check_file_list,
}


def _unknown_input_field(spec: EndpointSpec, loc: Loc, key: str) -> InputProblem:
    problem = _unknown_field(loc, key, tuple(spec.field_map), _INPUT_ALIASES)
    elsewhere = [e for e, s in ENDPOINTS.items() if key in s.field_map]
    if elsewhere and "suggestion" not in (problem.ctx or {}):
        others = " and others" if len(elsewhere) > 1 else ""
        msg = (
            f"{_where(loc)} is not accepted by {spec.endpoint_id} (only by {elsewhere[0]}"
            f"{others}); remove it."
        )
        return InputProblem(
            loc, msg, problem.type, {**(problem.ctx or {}), "accepted_by": elsewhere}
        )
    return problem


# --- files ----------------------------------------------------------------------------------


def _check_file(file: FileSpec, value: object, loc: Loc, out: list[InputProblem]) -> None:
    if type(value) is not str:
        detail = f" (an http(s) URL or a data URI of the {file.kind})"
        out.append(_type_problem(loc, "string", value, detail=detail))
    elif value.startswith("data:"):
        _check_data_uri(file, value, loc, out)
    else:
        _check_url(value, loc, URL_MAX_CHARS, out)


def _check_url(value: str, loc: Loc, max_chars: int, out: list[InputProblem]) -> None:
    if len(value) > max_chars:
        out.append(
            _problem(
                loc,
                "too_long",
                f"{_where(loc)} is {len(value)} characters; URLs may have at most {max_chars}.",
                {"max_length": max_chars},
            )
        )
        return
    problem = _url_problem(value)
    if problem is not None:
        type_, reason = problem
        ctx = {"allowed": ["http", "https"]} if type_ == "url_scheme" else None
        out.append(_problem(loc, type_, f"{_where(loc)} {reason}", ctx))


def _url_problem(url: str) -> tuple[str, str] | None:
    """(type, reason) when `url` is not an absolute http(s) URL with a host and no userinfo.

    Hand-rolled rather than urllib's urlsplit, which costs ~7 µs per new URL (its LRU cache
    only flatters benchmarks); this costs well under one.
    """
    if not url.isprintable() or " " in url:
        return "url_invalid", "contains whitespace or control characters; percent-encode them."
    # Fast path for the common shape: a plain host name, maybe a port, nothing odd.
    simple = _SIMPLE_HTTP_URL_RE.match(url)
    if simple and (not simple.group(1) or 0 < int(simple.group(1)) < 65536):
        return None
    scheme_match = _URL_SCHEME_RE.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme not in ("http", "https"):
        got = f'"{scheme_match.group(1)}"' if scheme_match else "missing"
        hint = ' Data URIs must start with lowercase "data:".' if scheme == "data" else ""
        return "url_scheme", f"must be an absolute http or https URL; the scheme is {got}.{hint}"
    rest = url[len(scheme) + 1 :]
    if not rest.startswith("//"):
        return "url_invalid", "has no host; expected http(s)://host/..."
    authority_match = _URL_AUTHORITY_RE.match(rest, 2)
    authority = authority_match.group(0) if authority_match else ""
    if "@" in authority:
        return (
            "url_credentials",
            "must not embed credentials (user:password@); use a presigned URL or one that "
            "needs no authentication.",
        )
    if authority.startswith("["):
        host, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")) or not _is_ipv6(host):
            return "url_invalid", "has an invalid IPv6 host."
        port = port[1:]
    else:
        host, _, port = authority.partition(":")
        if _URL_BAD_HOST_RE.search(host):
            return "url_invalid", "has an invalid character in its host."
    if not host:
        return "url_invalid", "has no host."
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return "url_invalid", "has an invalid port."
    return None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _check_data_uri(file: FileSpec, value: str, loc: Loc, out: list[InputProblem]) -> None:
    problem = data_uri_problem(file, value, _where(loc))
    if problem is not None:
        out.append(_problem(loc, problem.type, problem.msg, problem.ctx))


# --- top level ------------------------------------------------------------------------------

_EXAMPLE_ID = f'"{SUPPORTED_ENDPOINTS[0]}"'


def _check_passthrough(endpoint: str, patterns: Sequence[str], out: list[InputProblem]) -> bool:
    """True when `endpoint` may pass through; otherwise records why not."""
    loc: Loc = ("endpoint",)
    if any(fnmatch.fnmatchcase(endpoint, pattern) for pattern in patterns):
        if len(endpoint) <= ENDPOINT_ID_MAX_CHARS and _ENDPOINT_ID_RE.fullmatch(endpoint):
            return True
        out.append(
            _problem(
                loc,
                "invalid_endpoint",
                f'"{endpoint}" is not a valid fal endpoint id: use owner/app[/path] with '
                f"segments of letters, digits, '.', '_' and '-', at most "
                f"{ENDPOINT_ID_MAX_CHARS} characters.",
            )
        )
        return False
    suggestion = difflib.get_close_matches(endpoint, SUPPORTED_ENDPOINTS, n=1, cutoff=0.6)
    ctx: dict[str, Any] = {"supported": list(SUPPORTED_ENDPOINTS)}
    msg = f"Unknown endpoint {json.dumps(endpoint)}."
    if suggestion:
        ctx["suggestion"] = suggestion[0]
        msg += f' Did you mean "{suggestion[0]}"?'
    msg += f" Supported: {', '.join(SUPPORTED_ENDPOINTS)}"
    if patterns:
        ctx["allowed_patterns"] = list(patterns)
        msg += f"; also endpoints matching {', '.join(patterns)}"
    out.append(_problem(loc, "unknown_endpoint", msg + ".", ctx))
    return False


def _check_callback_events(body: dict[str, Any], out: list[InputProblem]) -> tuple[str, ...]:
    """`callback_events`: a non-empty list of known event types, only with a callback_url."""
    loc: Loc = ("callback_events",)
    events = body.get("callback_events")
    if events is None:
        return DEFAULT_CALLBACK_EVENTS
    if not isinstance(events, list) or not events:
        out.append(
            _type_problem(loc, "array", events, detail=" of event types, at least one")
            if not isinstance(events, list)
            else _problem(loc, "too_short", "callback_events must name at least one event type.")
        )
        return DEFAULT_CALLBACK_EVENTS
    for index, event in enumerate(events):
        if event not in CALLBACK_EVENT_TYPES:
            allowed = ", ".join(CALLBACK_EVENT_TYPES)
            out.append(
                _problem(
                    (*loc, index),
                    "enum",
                    f"{_where((*loc, index))} must be one of {allowed}; got {_describe(event)}.",
                    {"expected": list(CALLBACK_EVENT_TYPES)},
                )
            )
    if body.get("callback_url") is None:
        out.append(_problem(loc, "requires", "callback_events needs a callback_url to deliver to."))
    return tuple(event for event in CALLBACK_EVENT_TYPES if event in events)


def _check_metadata(metadata: object, out: list[InputProblem]) -> None:
    loc: Loc = ("metadata",)
    if not isinstance(metadata, dict):
        out.append(_type_problem(loc, "object", metadata))
        return
    try:
        encoded = _COMPACT_JSON.encode(metadata)
    except (TypeError, ValueError) as exc:
        out.append(_problem(loc, "invalid_json", f"metadata is not plain JSON: {exc}."))
        return
    # A character is at most 4 bytes in UTF-8: short objects need no encoding to be sized.
    if len(encoded) * 4 <= METADATA_MAX_BYTES:
        return
    size = len(encoded.encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        out.append(
            _problem(
                loc,
                "too_large",
                f"metadata is {size} bytes as compact JSON; at most {METADATA_MAX_BYTES} "
                "bytes allowed. Store large data yourself and reference it by id.",
                {"max_bytes": METADATA_MAX_BYTES, "size_bytes": size},
            )
        )


# --- problem builders -----------------------------------------------------------------------


def _problem(loc: Loc, type_: str, msg: str, ctx: Mapping[str, Any] | None = None) -> InputProblem:
    return InputProblem(loc, msg, type_, ctx)


def _missing(loc: Loc, what: str) -> InputProblem:
    return _problem(loc, "missing", f"{_where(loc)} is required: {what}.")


def _type_problem(loc: Loc, expected: str, value: object, *, detail: str = "") -> InputProblem:
    """Wrong JSON type; `expected` is a JSON type name ("string", "object", ...)."""
    article = "an" if expected[0] in "aeiou" else "a"
    msg = f"{_where(loc)} must be {article} {expected}{detail}; got {_describe(value)}."
    if value is None and len(loc) > 1:
        msg += " Omit the field to use fal's default."
    return _problem(loc, "type", msg, {"expected": expected})


def _first_sentence(text: str) -> str:
    sentence = text.split(". ", 1)[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:]


def _unknown_field(
    loc: Loc, key: str, known: Sequence[str], aliases: Mapping[str, str]
) -> InputProblem:
    folded = _CAMEL_RE.sub(r"_\1", str(key)).lower()
    suggestion = next((c for c in (folded, aliases.get(folded)) if c in known and c != key), None)
    if suggestion is None:
        close = difflib.get_close_matches(folded, known, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    ctx: dict[str, Any] = {"known": list(known)}
    msg = f"{_where(loc)} is not a known field"
    if suggestion:
        ctx["suggestion"] = suggestion
        msg += f'; did you mean "{suggestion}"?'
    else:
        msg += f"; known fields: {', '.join(known)}."
    return _problem(loc, "unknown_field", msg, ctx)


def _enum_suggestion(allowed: tuple[str, ...], value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    text = text.strip().lower()
    for candidate in (text, text + "s", text + "p", text.replace("x", ":")):
        if candidate in allowed:
            return candidate
    close = difflib.get_close_matches(text, allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _where(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"


def _describe(value: object) -> str:
    """JSON type and a short rendering of `value`, e.g. `integer 8`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = json.dumps(value[:40]) + ("…" if len(value) > 40 else "")
        return f"string {shown}"
    if isinstance(value, list):
        return f"array of {len(value)} item(s)"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
