"""docs/configuration.md's two tables list exactly the broker settings samsa knows: the ones it
acts on (`samsa.config.SETTINGS`, with type, valid values, both defaults and how samsa differs)
and Kafka's cluster settings it accepts and ignores (`samsa.config.NOT_APPLICABLE`)."""

from __future__ import annotations

from pathlib import Path

from samsa.config import not_applicable_reference, reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _rows(columns: int) -> list[tuple[str, ...]]:
    rows = []
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = tuple(cell.strip().strip("`") for cell in line.strip()[1:-1].split("|"))
        if len(cells) == columns:
            rows.append(cells)
    return rows


def test_the_settings_table_is_the_codes_list() -> None:
    assert _rows(6) == reference()


def test_the_not_applicable_table_is_the_codes_list() -> None:
    assert _rows(4) == not_applicable_reference()
