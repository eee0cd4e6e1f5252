"""What a Veo job costs on fal: a price table per model family and the per-job estimate.

fal bills Veo per second of output video; the rate depends on the family, whether audio is
generated, and (Veo 3.1) whether the output is 4k. The defaults below are fal's published
prices as read on 2026-11-22 (shared/fal-protocol.md §6); operators override them with a JSON
object (e.g. from a PRICE_OVERRIDES environment variable) when fal changes its prices:

    {"veo3.1": {"usd_per_s_audio": 0.45}, "veo3.1-fast": {"usd_per_s": 0.12, "as_of": "2027-01-05"}}

Estimates are informational (shown to clients, used for budgets); fal's `X-Fal-Billable-Units`
is the authority.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from service.catalog import (
    FAMILY_VEO2,
    FAMILY_VEO31,
    FAMILY_VEO31_FAST,
    EndpointSpec,
    get_endpoint,
)

_TEXT_FIELDS = ("source", "as_of", "note")


@dataclass(frozen=True, slots=True)
class FamilyRates:
    """USD per second of output video for one model family.

    `usd_per_s` is the base rate: 720p/1080p without audio, or the only rate of a model that
    makes no audio. A None rate means the family has no such tier.
    """

    usd_per_s: float
    usd_per_s_audio: float | None = None
    usd_per_s_4k: float | None = None
    usd_per_s_4k_audio: float | None = None
    source: str = ""
    as_of: str = ""
    note: str | None = None

    def rate(self, *, resolution: str | None, audio: bool) -> float:
        """The per-second rate for one output; tiers the family lacks fall back to the base."""
        if resolution == "4k":
            tiered = self.usd_per_s_4k_audio if audio else self.usd_per_s_4k
            if tiered is not None:
                return tiered
        if audio and self.usd_per_s_audio is not None:
            return self.usd_per_s_audio
        return self.usd_per_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "usd_per_s": self.usd_per_s,
            "usd_per_s_audio": self.usd_per_s_audio,
            "usd_per_s_4k": self.usd_per_s_4k,
            "usd_per_s_4k_audio": self.usd_per_s_4k_audio,
            "source": self.source,
            "as_of": self.as_of,
            **({"note": self.note} if self.note else {}),
        }


_FAL_PRICES_AS_OF = "2026-11-22"

DEFAULT_FAMILY_RATES: Mapping[str, FamilyRates] = MappingProxyType(
    {
        FAMILY_VEO31: FamilyRates(
            usd_per_s=0.20,
            usd_per_s_audio=0.40,
            usd_per_s_4k=0.40,
            usd_per_s_4k_audio=0.60,
            source=(
                "fal.ai/models/fal-ai/veo3.1/llms.txt and .../veo3.1/reference-to-video/llms.txt "
                "pricing sections (fal-protocol.md §6)"
            ),
            as_of=_FAL_PRICES_AS_OF,
            note=(
                "i2v/FLF 720p/1080p rates from a third-party copy of fal's text; their 4k rates "
                "and the extend-video rate are assumed equal to text-to-video's."
            ),
        ),
        FAMILY_VEO31_FAST: FamilyRates(
            usd_per_s=0.10,
            usd_per_s_audio=0.15,
            usd_per_s_4k=0.30,
            usd_per_s_4k_audio=0.35,
            source=(
                "fal.ai/models/fal-ai/veo3.1/fast/first-last-frame-to-video/llms.txt and "
                ".../veo3.1/fast/extend-video/llms.txt (fal-protocol.md §6)"
            ),
            as_of=_FAL_PRICES_AS_OF,
            note="Fast i2v 4k rate assumed equal to Fast FLF's.",
        ),
        FAMILY_VEO2: FamilyRates(
            usd_per_s=0.50,
            source=(
                "fal.ai/models/fal-ai/veo2: $2.50 for 5 s, $0.50 per extra second "
                "(fal-protocol.md §6)"
            ),
            as_of=_FAL_PRICES_AS_OF,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Per-family rates; build with `PriceTable.default()` or `PriceTable.from_overrides()`."""

    families: Mapping[str, FamilyRates]

    @classmethod
    def default(cls) -> PriceTable:
        """fal's published prices as of the date recorded in each family."""
        return cls(DEFAULT_FAMILY_RATES)

    @classmethod
    def from_overrides(cls, raw: str | None) -> PriceTable:
        """The default table with the families/fields in the JSON object `raw` replaced.

        `raw` maps a family ("veo3.1", "veo3.1-fast", "veo2") to any of usd_per_s,
        usd_per_s_audio, usd_per_s_4k, usd_per_s_4k_audio (non-negative numbers, or null for
        "no such tier" except usd_per_s) and source/as_of/note strings. None or blank: defaults.
        An overridden family's `source` becomes "operator override" unless one is given.

        Raises ValueError naming the offending entry, so a typo fails start-up instead of
        silently leaving an old price in place.
        """
        families = dict(DEFAULT_FAMILY_RATES)
        if raw is None or not raw.strip():
            return cls(MappingProxyType(families))
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"price overrides are not valid JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise ValueError("price overrides must be a JSON object keyed by model family")
        for family, changes in overrides.items():
            if family not in families:
                known = ", ".join(sorted(families))
                raise ValueError(f"price overrides: unknown family {family!r} (known: {known})")
            if not isinstance(changes, dict):
                raise ValueError(f"price overrides[{family!r}] must be a JSON object")
            families[family] = _apply_override(family, families[family], changes)
        return cls(MappingProxyType(families))

    def rates(self, family: str) -> FamilyRates:
        """Rates of `family`; KeyError for a family the table lacks."""
        return self.families[family]

    def estimate(self, endpoint_id: str, input: Mapping[str, Any]) -> float | None:
        """Estimated USD cost of a job on `endpoint_id`; None for pass-through endpoints."""
        spec = get_endpoint(endpoint_id)
        return None if spec is None else self.estimate_usd(spec, input)

    def estimate_usd(self, spec: EndpointSpec, input: Mapping[str, Any]) -> float:
        """Cost of one job, with fal's documented defaults for unset duration/resolution/audio.

        Values outside the catalog (the input should have been validated) fall back to the
        defaults rather than raising: an estimate must never fail a job.
        """
        seconds = _duration_s(input.get("duration"), spec)
        resolution = input.get("resolution", spec.default_of("resolution"))
        audio = False
        if "generate_audio" in spec.field_map:
            value = input.get("generate_audio", spec.default_of("generate_audio"))
            audio = value if isinstance(value, bool) else True
        rate = self.rates(spec.family).rate(
            resolution=resolution if isinstance(resolution, str) else None, audio=audio
        )
        # Rounded to micro-dollars so that 0.40 * 8 reads as 3.2, not 3.2000000000000002.
        return round(rate * seconds, 6)

    def describe(self, spec: EndpointSpec) -> dict[str, Any]:
        """Pricing block of the `GET /v1/endpoints` entry for `spec`."""
        rates = self.rates(spec.family)
        return {
            "currency": "USD",
            "unit": "second of output video",
            "family": spec.family,
            **rates.as_dict(),
            "estimate_with_defaults_usd": self.estimate_usd(spec, {}),
            **({"endpoint_note": spec.pricing_note} if spec.pricing_note else {}),
        }

    def as_dict(self) -> dict[str, Any]:
        return {family: rates.as_dict() for family, rates in self.families.items()}


def estimate_cost_usd(
    endpoint_id: str, input: Mapping[str, Any], prices: PriceTable
) -> float | None:
    """Estimated USD cost of a job on `endpoint_id`; None for pass-through endpoints."""
    return prices.estimate(endpoint_id, input)


def _duration_s(value: object, spec: EndpointSpec) -> float:
    allowed = spec.field_map["duration"].enum if "duration" in spec.field_map else ()
    if not (isinstance(value, str) and value in allowed):
        value = spec.default_of("duration")
    assert isinstance(value, str) and value.endswith("s"), spec.endpoint_id
    return float(value[:-1])


def _apply_override(family: str, rates: FamilyRates, changes: dict[str, Any]) -> FamilyRates:
    known = {f.name for f in fields(FamilyRates)}
    updates: dict[str, Any] = {"source": "operator override"}
    for key, value in changes.items():
        where = f"price overrides[{family!r}][{key!r}]"
        if key not in known:
            raise ValueError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
        if key in _TEXT_FIELDS:
            if not isinstance(value, str):
                raise ValueError(f"{where} must be a string")
        elif value is None:
            if key == "usd_per_s":
                raise ValueError(f"{where}: the base rate cannot be null")
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{where} must be a finite non-negative number")
        else:
            value = float(value)
        updates[key] = value
    return replace(rates, **updates)
