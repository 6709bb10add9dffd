"""docs/compatibility.md's table of APIs says what samsa advertises: one row per API, its
versions as `samsa.protocol.apis.ADVERTISED` has them."""

from __future__ import annotations

import re
from pathlib import Path

from samsa.protocol.apis import ADVERTISED

DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
ROW = re.compile(r"^\| (\d+) \| (\w+) \| ([0-9-]+) \|", re.MULTILINE)


def _versions(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def test_the_api_table_lists_every_advertised_version() -> None:
    rows = {int(key): _versions(served) for key, _, served in ROW.findall(DOC.read_text())}
    assert rows == {int(key): (r.min, r.max) for key, r in ADVERTISED.items()}
