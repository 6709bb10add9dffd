"""What a test needs from the machine, and what happens when it is missing.

Locally a test whose tool or service is missing is skipped, loudly (the reason says it did NOT
run). With `SAMSA_REQUIRE_ALL=1` (CI sets it) it fails instead, so a green CI run means every
test really ran.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ALL_ENV = "SAMSA_REQUIRE_ALL"


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL_ENV) == "1"


def missing(message: str) -> NoReturn:
    """Skip this test loudly, or fail it when everything is required."""
    if require_all():
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of a tool a test needs."""
    path = shutil.which(name)
    if path is None:
        missing(f"MISSING TOOL: {name!r} is not installed; this test did NOT run")
    return path
