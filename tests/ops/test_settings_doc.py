"""README's configuration tables are the generated ones, and every setting is described."""

from __future__ import annotations

from service.settings import Settings
from service.settings_doc import NOTES, README, generated_section, readme_section


def test_readme_settings_tables_match_the_settings_objects() -> None:
    section = readme_section(README.read_text())
    assert section is not None, "README.md lost its generated settings section"
    assert section == generated_section(), (
        "README.md's settings tables are stale: run `python -m service.settings_doc --write`"
    )


def test_every_setting_is_in_the_table_with_a_description() -> None:
    table = generated_section()
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in table
        assert field.description or NOTES.get(name), name
    for name in ("CALLBACK_MAX_TRIES", "RETRY_BASE_DELAY_S", "DISPATCH_MAX_TRIES",
                 "AMBIGUOUS_SUBMIT_GRACE_S", "JOB_RETENTION_S", "WORKER_MAX_JOBS",
                 "FAL_SUBMIT_TIMEOUT_S", "MAX_WEBHOOK_BYTES", "LOG_LEVEL", "ACCESS_LOG",
                 "SIMULATOR_DELAY_S"):  # fmt: skip
        assert f"`{name}`" in table, name
