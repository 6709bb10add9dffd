"""`samsa log`'s command line: a usage error is one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from tools.support import TOPIC, Batch, samsa


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--data-dir", "{missing}"], "samsa log verify: no data dir {missing}"),
        (["verify", "--data-dir", "{data}", "--partition", "0"], "--partition needs --topic"),
        (["verify", "--data-dir", "{data}", "--topic", "nope"], "no topic nope in {data}"),
        (["verify", "--data-dir", "{data}", "--topic", TOPIC, "--partition", "x"], "invalid int"),
        (["verify"], "the following arguments are required: --data-dir"),
        (["repair", "--data-dir", "{data}", "--topic", TOPIC], "required: --partition"),
        (
            ["repair", "--data-dir", "{data}", "--topic", TOPIC, "--partition", "7"],
            "no partition directory {data}/orders-7",
        ),
        (
            ["repair", "--data-dir", "{missing}", "--topic", TOPIC, "--partition", "0"],
            "no partition directory {missing}/orders-0",
        ),
    ],
    ids=[
        "no-data-dir",
        "partition-without-topic",
        "unknown-topic",
        "partition-not-a-number",
        "no-data-dir-argument",
        "repair-without-partition",
        "repair-unknown-partition",
        "repair-no-data-dir",
    ],
)
def test_misuse_is_one_line_and_exit_2(
    data_dir: str, batches: list[Batch], args: list[str], message: str
) -> None:
    paths = {"data": data_dir, "missing": data_dir + "-missing"}
    result = samsa(*(arg.format(**paths) for arg in args))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message.format(**paths) in result.stderr
