"""Every setting of duro's settings model is named in the README, where users look for it."""

from __future__ import annotations

from duro.settings_table import markdown_table, settings_fields
from tests.processes import REPO_ROOT


def test_every_setting_of_the_model_is_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [variable for variable, _ in settings_fields() if f"`{variable}`" not in readme]
    assert not missing, (
        f"settings missing from README.md: {missing}; add their rows to its 'All settings' table"
        " (`python -m duro.settings_table` prints the whole table)"
    )


def test_the_table_walks_into_every_group_and_describes_every_setting() -> None:
    fields = dict(settings_fields())
    assert "DURO_WORKER__LINK_TIMEOUT_MS" in fields and "DURO_WORKER__MAX_LINK_PENDING_REQUESTS" in fields
    assert "DURO_INGRESS__MAX_BODY_BYTES" in fields and "DURO_RETRY__ON_MAX_ATTEMPTS" in fields
    assert "DURO_WORKER" not in fields, "a group is not a setting"
    undescribed = [variable for variable, field in fields.items() if not field.description]
    assert not undescribed, f"settings without a description: {undescribed}"
    assert "| `DURO_WORKER__LINK_TIMEOUT_MS` | `60_000` |" in markdown_table()
