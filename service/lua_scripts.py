"""The Lua steps' source, read from the package (service/lua/), for `Redis.register_script`."""

from __future__ import annotations

from importlib import resources


def lua_source(name: str) -> str:
    """The text of `service/lua/<name>`."""
    return resources.files("service").joinpath("lua", name).read_text(encoding="utf-8")
