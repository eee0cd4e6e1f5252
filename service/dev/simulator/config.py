"""Settings of the local fal simulator, read once from `SIMULATOR_*` environment variables."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_SEED_HEX_CHARS = 64


class SimulatorConfig(BaseSettings):
    """Everything the simulator can be told; every field is also a keyword argument.

    Filled in after validation, so they are never empty: `public_url` (from host and port) and
    `signing_keys` (one random key). Treat an instance as read-only once built.
    """

    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    public_url: str = Field(default="", description="Base URL put into every URL we hand out.")
    delay_s: float = Field(default=2.0, ge=0.0, description="Fake inference time before render.")
    signing_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    fal_key: str | None = Field(default=None, repr=False)
    user_id: str = "simulator-user-0001"
    webhook_time_scale: float = Field(default=0.01, ge=0.0)
    concurrency: int = Field(default=2, ge=1)
    data_dir: Path | None = None
    key_rotation_s: float = Field(
        default=0.0, ge=0.0, description="Signing keys take turns this often; 0: the first signs."
    )
    render_cache: bool = Field(
        default=False, description="Reuse the MP4 of an identical earlier render (load tests)."
    )

    @field_validator("signing_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        # The environment gives one comma-separated string; code may pass a list or tuple.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("signing_keys")
    @classmethod
    def _check_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            try:
                raw = bytes.fromhex(key)
            except ValueError:
                raise ValueError("signing keys must be hex") from None
            if len(raw) * 2 != _SEED_HEX_CHARS:
                raise ValueError("each signing key must be a 32-byte Ed25519 seed (64 hex chars)")
        return tuple(key.lower() for key in keys)

    @field_validator("fal_key")
    @classmethod
    def _blank_key_is_none(cls, key: str | None) -> str | None:
        return key or None

    @model_validator(mode="after")
    def _fill_defaults(self) -> SimulatorConfig:
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.signing_keys:
            self.signing_keys = (secrets.token_hex(32),)
        return self

    @classmethod
    def from_env(cls) -> SimulatorConfig:
        """Read the configuration from the environment (the same as calling the class bare)."""
        return cls()
