"""What every section of the config schema shares: the base model and the key-naming error.

``nnclf/config.py`` builds the schema from these; ``nnclf/hyperparams.py`` uses them for each
optimizer's and schedule's own keys. Nothing here reads files.
"""

from __future__ import annotations

import reprlib
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class KeyProblem(ValueError):
    """A validator's complaint about a key other than the one it validates.

    ``key`` is dotted and relative to the section whose validator raises it (a ``Config``
    model validator says ``"loss.name"``); the error then names that key and its line.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def shown(value: Any) -> str:
    """repr(value), cut short: a config value can be huge (YAML aliases nest exponentially)."""
    short = reprlib.Repr()  # (keyword arguments need Python 3.12)
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 3, 6, 6, 60, 60
    text = short.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value, info):
        """YAML reads yes/no/on/off/true as booleans, and pydantic would quietly take them as 1/0
        for a number (``epochs: yes`` trains one epoch): a boolean is only valid for a bool key."""
        text = str(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
            if text.startswith("list[int]"):
                raise ValueError(f"expected a list of integers, got {shown(value)}")
            if "int" in text or "float" in text:
                raise ValueError(f"expected {'an integer' if 'int' in text else 'a number'}, got the boolean {value!r}")
        return value
