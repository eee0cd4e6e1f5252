"""SimulatorConfig: environment parsing, defaults, and refusal of bad signing keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.dev.simulator import SimulatorConfig


def test_environment_is_read_with_comma_separated_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULATOR_PORT", "9123")
    monkeypatch.setenv("SIMULATOR_SIGNING_KEYS", f"{'AB' * 32}, {'cd' * 32}")
    monkeypatch.setenv("SIMULATOR_DELAY_S", "0")
    monkeypatch.setenv("SIMULATOR_FAL_KEY", "k")
    config = SimulatorConfig.from_env()
    assert config.port == 9123
    assert config.signing_keys == ("ab" * 32, "cd" * 32)
    assert config.delay_s == 0.0
    assert config.fal_key == "k"
    assert config.public_url == "http://127.0.0.1:9123"


def test_defaults_generate_a_key_and_keep_an_explicit_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SIGNING_KEYS", "PUBLIC_URL", "PORT", "FAL_KEY", "DELAY_S"):
        monkeypatch.delenv(f"SIMULATOR_{name}", raising=False)
    config = SimulatorConfig()
    assert len(config.signing_keys) == 1
    assert config.port == 8100
    assert config.delay_s == 2.0
    assert config.fal_key is None
    explicit = SimulatorConfig(public_url="https://sim.example/")
    assert explicit.public_url == "https://sim.example"


@pytest.mark.parametrize("keys", ["zz" * 32, "ab" * 16])
def test_bad_signing_keys_are_refused(keys: str) -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig(signing_keys=(keys,))
