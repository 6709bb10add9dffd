"""librdkafka's own test suite against samsa (`samsa.tools.librdkafka_suite`).

The quick subset needs a librdkafka source tree with its tests built, named by
SAMSA_LIBRDKAFKA_SRC (see docs/compatibility.md, "librdkafka's test suite"). It is marked slow
(CI cannot fetch librdkafka); with --run-slow and no source it is skipped loudly, or fails
under SAMSA_REQUIRE_ALL=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samsa.testing.requirements import missing
from samsa.tools.librdkafka_suite import (
    RUN,
    SuiteTest,
    parse_progress,
    parse_summary,
    read_decisions,
    read_suite,
    run_number,
    select,
)

SOURCE_ENV = "SAMSA_LIBRDKAFKA_SRC"
# Quick tests of producing, consuming, offsets and group membership (about a minute in all).
QUICK_NUMBERS = ("0001", "0002", "0012", "0013", "0014", "0021", "0031", "0035")

SUMMARY = (
    "| \x1b[32m 0001_multiobj                            |     PASSED |   1.171s \x1b[0m|\n"
    "| \x1b[31m 0011_produce_batch                       |     FAILED |   5.100s \x1b[0m|"
    '\x1b[31m 0011-produce_batch.c:718: Test assertion failed: "cnt == 10"\x1b[0m\n'
    "| \x1b[36m 0028_long_topicnames                     |    SKIPPED |   0.000s \x1b[0m|"
    "\x1b[36m Filtered due to negative test flags\x1b[0m\n"
)
ABORTED = (
    "[0045_subscribe_update  /  1.0s] ================= Test 0045_subscribe_update PASSED ==\n"
    '### Test "0045_subscribe_update_topic_remove (do_test_topic_remove:110)" failed at '
    "test.c:5257:test_kafka_topics() at Sun Dec  6 02:50:44 2026: ###\n"
    "test_kafka_topics: KAFKA_PATH and BROKERS must be set\n"
    '### Test "<MAIN>" failed at test.c:1946:test_wait_exit() at Sun Dec  6 2026: ###\n'
    "8 thread(s) still active in librdkafka\n"
)


def test_the_summary_table_gives_each_tests_state_time_and_reason() -> None:
    assert parse_summary(SUMMARY) == {
        "0001_multiobj": ("PASSED", 1.171, ""),
        "0011_produce_batch": (
            "FAILED",
            5.1,
            '0011-produce_batch.c:718: Test assertion failed: "cnt == 10"',
        ),
        "0028_long_topicnames": ("SKIPPED", 0.0, "Filtered due to negative test flags"),
    }


def test_without_a_summary_the_progress_lines_say_what_ran() -> None:
    assert parse_progress(ABORTED) == {
        "0045_subscribe_update": ("PASSED", 0.0, ""),
        "0045_subscribe_update_topic_remove": (
            "FAILED",
            0.0,
            "test.c:5257:test_kafka_topics(): "
            "test_kafka_topics: KAFKA_PATH and BROKERS must be set",
        ),
    }


def test_every_excluded_test_has_a_reason() -> None:
    decisions = read_decisions()
    assert len(decisions) > 150
    assert all(decision == RUN or len(decision) > 10 for decision in decisions.values())


def test_tests_are_run_by_number_and_scenario_and_excluded_ones_reported() -> None:
    suite = [
        SuiteTest("0045_subscribe_update", frozenset(), "default"),
        SuiteTest("0045_subscribe_update_mock", frozenset({"LOCAL"}), "default"),
        SuiteTest("0045_subscribe_update_topic_remove", frozenset(), "noautocreate"),
        SuiteTest("0046_rkt_cache", frozenset({"LOCAL"}), "default"),
    ]
    decisions = {"0045_subscribe_update_mock": "local", "0046_rkt_cache": "local"}
    groups, excluded = select(suite, decisions, {"0045"})
    assert [[test.name for test in group] for group in groups] == [
        ["0045_subscribe_update"],
        ["0045_subscribe_update_topic_remove"],
    ]
    assert [(result.name, result.detail) for result in excluded] == [
        ("0045_subscribe_update_mock", "local")
    ]


@pytest.mark.slow
def test_a_quick_subset_of_librdkafkas_suite_passes(tmp_path: Path) -> None:
    source = os.environ.get(SOURCE_ENV)
    if not source or not (Path(source) / "tests" / "test-runner").exists():
        missing(
            f"MISSING: {SOURCE_ENV} names no built librdkafka source (tests/test-runner); "
            "librdkafka's suite did NOT run"
        )
    suite = read_suite(Path(source))
    groups, _ = select(suite, read_decisions(), set(QUICK_NUMBERS))
    results = [
        result
        for group in groups
        for result in run_number(Path(source), group, tmp_path, "4.0.0", 120.0)
    ]
    failed = [result for result in results if result.result != "passed"]
    assert results and not failed, failed
