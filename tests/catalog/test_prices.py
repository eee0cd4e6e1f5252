"""Cost estimates and operator price overrides."""

from __future__ import annotations

import json

import pytest

from service.prices import PriceTable, estimate_cost_usd
from tests.catalog.cases import (
    EXTEND,
    FAST_EXTEND,
    FAST_FLF,
    FAST_I2V,
    FLF,
    I2V,
    R2V,
    REQUIRED,
    VEO2,
)

DEFAULT = PriceTable.default()


@pytest.mark.parametrize(
    ("endpoint", "changes", "usd"),
    [
        # The three worked examples of fal-protocol.md §6.
        (I2V, {"duration": "8s", "resolution": "1080p", "generate_audio": True}, 3.20),
        (FAST_I2V, {"duration": "8s", "generate_audio": True}, 1.20),
        (VEO2, {"duration": "8s"}, 4.00),
        # fal's defaults when unset: 8 s, 720p, audio on; Veo 2 5 s.
        (I2V, {}, 3.20),
        (FAST_FLF, {}, 1.20),
        (VEO2, {}, 2.50),
        (I2V, {"generate_audio": False}, 1.60),
        (FLF, {"duration": "4s", "generate_audio": False}, 0.80),
        (I2V, {"resolution": "4k"}, 4.80),
        (I2V, {"resolution": "4k", "generate_audio": False}, 3.20),
        (FAST_I2V, {"resolution": "4k"}, 2.80),
        (FAST_I2V, {"resolution": "4k", "generate_audio": False, "duration": "6s"}, 1.80),
        # Reference-to-video bills like standard Veo 3.1; extend like its tier, for 7 s.
        (R2V, {"resolution": "1080p"}, 3.20),
        (R2V, {"resolution": "4k", "generate_audio": False}, 3.20),
        (EXTEND, {}, 2.80),
        (FAST_EXTEND, {"generate_audio": False}, 0.70),
    ],
)
def test_estimate(endpoint: str, changes: dict[str, object], usd: float) -> None:
    estimate = estimate_cost_usd(endpoint, {**REQUIRED[endpoint], **changes}, DEFAULT)
    assert estimate == pytest.approx(usd)
    assert estimate == round(usd, 6)


def test_pass_through_endpoints_have_no_estimate() -> None:
    assert estimate_cost_usd("fal-ai/flux/dev", {"prompt": "x"}, DEFAULT) is None
    assert DEFAULT.estimate("fal-ai/flux/dev", {"prompt": "x"}) is None


def test_table_method_and_function_agree() -> None:
    assert (
        DEFAULT.estimate(VEO2, {"duration": "6s"})
        == estimate_cost_usd(VEO2, {"duration": "6s"}, DEFAULT)
        == 3.0
    )


def test_unvalidated_values_fall_back_to_defaults_instead_of_failing() -> None:
    odd = {"duration": 8, "resolution": None, "generate_audio": "yes"}
    assert estimate_cost_usd(I2V, odd, DEFAULT) == 3.20


@pytest.mark.parametrize("raw", [None, "", "  ", "{}"])
def test_no_overrides_give_the_default_table(raw: str | None) -> None:
    assert PriceTable.from_overrides(raw).as_dict() == DEFAULT.as_dict()


def test_override_replaces_only_the_named_rates() -> None:
    table = PriceTable.from_overrides(
        json.dumps(
            {"veo3.1": {"usd_per_s_audio": 0.45, "as_of": "2027-01-05"}, "veo2": {"usd_per_s": 1}}
        )
    )
    veo31 = table.rates("veo3.1")
    assert (veo31.usd_per_s, veo31.usd_per_s_audio, veo31.usd_per_s_4k_audio) == (0.20, 0.45, 0.60)
    assert (veo31.source, veo31.as_of) == ("operator override", "2027-01-05")
    assert table.rates("veo3.1-fast") == DEFAULT.rates("veo3.1-fast")
    assert estimate_cost_usd(I2V, REQUIRED[I2V], table) == 3.60
    assert estimate_cost_usd(VEO2, REQUIRED[VEO2], table) == 5.00


def test_a_tier_overridden_to_null_falls_back_to_the_base_rate() -> None:
    table = PriceTable.from_overrides('{"veo3.1-fast": {"usd_per_s_4k_audio": null}}')
    assert estimate_cost_usd(FAST_I2V, {**REQUIRED[FAST_I2V], "resolution": "4k"}, table) == 1.20


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"veo3": {"usd_per_s": 0.2}}', "unknown family 'veo3'"),
        ('{"veo2": 0.5}', "must be a JSON object"),
        ('{"veo2": {"usd_per_second": 0.5}}', "unknown key"),
        ('{"veo2": {"usd_per_s": -0.5}}', "non-negative"),
        ('{"veo2": {"usd_per_s": "0.5"}}', "non-negative"),
        ('{"veo2": {"usd_per_s": true}}', "non-negative"),
        ('{"veo2": {"usd_per_s": NaN}}', "finite"),
        ('{"veo2": {"usd_per_s": null}}', "cannot be null"),
        ('{"veo2": {"source": 3}}', "must be a string"),
    ],
)
def test_bad_overrides_fail_loudly(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PriceTable.from_overrides(raw)


def test_every_family_records_its_source_and_date() -> None:
    for family, rates in DEFAULT.families.items():
        assert rates.source and rates.as_of == "2026-11-22", family


def test_pricing_description_flags_the_assumed_extend_rate() -> None:
    from service.catalog import ENDPOINTS

    assert "assumed" in DEFAULT.describe(ENDPOINTS[EXTEND])["endpoint_note"]
    assert "endpoint_note" not in DEFAULT.describe(ENDPOINTS[FAST_EXTEND])
