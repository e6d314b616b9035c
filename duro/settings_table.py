"""Every setting of `duro serve` as a Markdown table (variable, default, meaning), read from the settings model.

`python -m duro.settings_table` prints it; the README's "All settings" table
is its output, and `tests/unit/test_settings_table.py` checks that every
setting is named there.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from duro.settings import DuroSettings

ENV_PREFIX = "DURO_"
NESTED = "__"


def settings_fields(model: type[BaseModel] = DuroSettings, prefix: str = ENV_PREFIX) -> Iterator[tuple[str, FieldInfo]]:
    """(environment variable, field) of every leaf setting, groups (ingress, invoker, ...) walked into."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from settings_fields(annotation, f"{prefix}{name.upper()}{NESTED}")
        else:
            yield f"{prefix}{name.upper()}", field


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "(required)"
    if field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}"
    return str(getattr(value, "value", value))


def markdown_table() -> str:
    lines = ["| variable (TOML: lower case, groups as tables) | default | meaning |", "| --- | --- | --- |"]
    for variable, field in settings_fields():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{variable}` | `{_default(field)}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
