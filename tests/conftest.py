from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("SAMSA_REQUIRE_ALL") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long soak tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow soak test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def require_binary(name: str) -> str:
    """The path of a tool a test needs. Missing: skip loudly, or fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"MISSING TOOL: {name!r} is not installed; this test did NOT run"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    return path
