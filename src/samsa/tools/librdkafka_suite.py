"""librdkafka's own integration tests (its `tests/` directory) run against a real `samsa serve`.

    python -m samsa.tools.librdkafka_suite --source /work/librdkafka-src [--tests 0001,0002]
    python -m samsa.tools.librdkafka_suite --source /work/librdkafka-src --list

`--source` is a librdkafka source tree whose tests are built (`./configure && make libs &&
make -C tests build`: `tests/test-runner` exists). The tests, their flags and scenarios are read
from its `tests/test.c`; which of them are run, and why the others are not, is kept in
`librdkafka_tests.toml` beside this module.

librdkafka's runner takes a test *number* (TESTS=0045 runs every 0045_* test); so one broker is
started per number and scenario, fresh (its own data dir), and the runner is given
`-L` (no local tests: those never contact a broker), `-s <scenario>` and the declared broker
version (TEST_KAFKA_VERSION, which decides what the suite itself skips). The broker's settings
are those of the suite's scenario (tests/scenarios/*.json): 4 partitions for an auto-created
topic, auto-creation on except in "noautocreate". Each test's output and the broker's log are
kept under `--out` for triage.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from samsa.testing.process import BrokerProcess

RUN = "run"
DATA_FILE = "librdkafka_tests.toml"
KAFKA_VERSION = "4.0.0"  # the Kafka samsa answers as: its API versions are 4.0's
TIMEOUT_S = 900.0  # 0113 alone runs over 5 minutes
# The broker the suite runs against is trivup's: Kafka's defaults, plus each scenario's settings
# (tests/scenarios/*.json, for one broker). samsa's defaults differ from Kafka's in one that the
# tests notice: Kafka waits 3 s before the first rebalance of an empty group, so that consumers
# started together join together (0113 counts the rebalances); samsa does not wait by default.
# trivup also switches the authorizer on, with everything allowed where no ACL names a resource
# (its server.properties template): 0081 creates, describes and deletes ACLs.
KAFKA_DEFAULTS = {
    "group.initial.rebalance.delay.ms": "3000",
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}
SCENARIO_SETTINGS = {
    "default": KAFKA_DEFAULTS | {"num.partitions": "4", "auto.create.topics.enable": "true"},
    "noautocreate": KAFKA_DEFAULTS | {"num.partitions": "4", "auto.create.topics.enable": "false"},
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\(B")
# One row of the runner's summary: "| 0001_multiobj | PASSED | 1.171s | <failure>".
_SUMMARY_ROW = re.compile(r"^\|\s*(\d{4}\w*)\s+\|\s+([A-Z_]+)\s+\|\s+([\d.]+)s\s*\|\s?(.*)$")
_PROGRESS_DONE = re.compile(r"=+ Test (\d{4}\w*) (PASSED|SKIPPED)")
_PROGRESS_FAILED = re.compile(r'^### Test "(\S+)[^"]*" failed at (\S+) ')
_SCENARIO = re.compile(r'\.scenario\s*=\s*"([^"]*)"')


@dataclass(frozen=True, slots=True)
class SuiteTest:
    """One `_TEST(...)` entry of librdkafka's tests/test.c."""

    name: str  # 0045_subscribe_update_mock
    flags: frozenset[str]  # LOCAL, MANUAL, KNOWN_ISSUE, SOCKEM, ...
    scenario: str  # the first scenario it runs in ("default,ak23" runs in "default")

    @property
    def number(self) -> str:
        return self.name[:4]


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    result: str  # passed, failed, skipped-by-suite, timeout, no-result, excluded
    seconds: float
    detail: str  # the failure line, the suite's skip reason or why it is excluded


def read_suite(source: Path) -> list[SuiteTest]:
    """The tests tests/test.c defines, in its order."""
    text = (source / "tests" / "test.c").read_text()
    start = text.index("struct test tests[] = {")
    table = text[start : text.index("{NULL}};", start) + len("{NULL}};")]
    tests = []
    for entry in table.split("_TEST(")[1:]:  # each entry up to the next
        name, _, rest = entry.partition(",")
        name = name.strip()
        flags = frozenset(flag.removeprefix("TEST_F_") for flag in re.findall(r"TEST_F_\w+", rest))
        scenario = _SCENARIO.search(rest)
        first = scenario.group(1).split(",")[0] if scenario else "default"
        tests.append(SuiteTest(name, flags, first))
    return tests


def _data() -> dict[str, Any]:
    return tomllib.loads(resources.files("samsa.tools").joinpath(DATA_FILE).read_text())


def read_decisions() -> dict[str, str]:
    """Test name -> "run" or the reason it is left out (librdkafka_tests.toml)."""
    decisions: dict[str, str] = _data()["tests"]
    return decisions


def kafka_topics_numbers() -> frozenset[str]:
    """The test numbers that shell out to Kafka's bin/kafka-topics.sh or bin/kafka-acls.sh."""
    return frozenset(_data()["kafka_topics_sh"]["numbers"])


def _kafka_path(work: Path) -> Path:
    """A KAFKA_PATH whose bin/kafka-topics.sh and bin/kafka-acls.sh are samsa.tools.kafka_topics
    and samsa.tools.kafka_acls."""
    for name, module in (("kafka-topics.sh", "kafka_topics"), ("kafka-acls.sh", "kafka_acls")):
        script = work / "kafka" / "bin" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m samsa.tools.{module} "$@"\n')
        script.chmod(0o755)
    return work / "kafka"


def parse_summary(output: str) -> dict[str, tuple[str, float, str]]:
    """Test name -> (state, seconds, failure or skip reason) from the runner's summary table."""
    rows = {}
    for line in _ANSI.sub("", output).splitlines():
        match = _SUMMARY_ROW.match(line.strip())
        if match:
            name, state, seconds, detail = match.groups()
            rows[name] = (state, float(seconds), detail.strip())
    return rows


def _result(name: str, state: str, seconds: float, detail: str) -> Result:
    names = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped-by-suite"}
    return Result(name, names.get(state, state.lower()), seconds, detail)


def run_number(
    source: Path,
    tests: Sequence[SuiteTest],
    out: Path,
    kafka_version: str,
    timeout_s: float,
    kafka_topics: bool = False,
) -> list[Result]:
    """Run the tests of one number and scenario against a fresh broker; one result per test.
    `kafka_topics`: give the tests a KAFKA_PATH with a bin/kafka-topics.sh (samsa's stand-in)."""
    number, scenario = tests[0].number, tests[0].scenario
    work = out / f"{number}-{scenario}"
    work.mkdir(parents=True, exist_ok=True)
    broker = BrokerProcess(str(work / "data"), SCENARIO_SETTINGS[scenario]).start()
    conf = work / "test.conf"
    conf.write_text(f"bootstrap.servers={broker.bootstrap}\n")
    env = dict(os.environ)
    libs = [str(source / "src"), str(source / "src-cpp"), env.get("LD_LIBRARY_PATH", "")]
    env.update(
        TESTS=number,
        RDKAFKA_TEST_CONF=str(conf),
        TEST_KAFKA_VERSION=kafka_version,
        LD_LIBRARY_PATH=":".join(libs),
    )
    if kafka_topics:
        env.update(KAFKA_PATH=str(_kafka_path(work)), BROKERS=broker.bootstrap)
    command = ["./test-runner", "-L", "-s", scenario]
    log = work / "test-runner.log"
    started = time.monotonic()
    timed_out = False
    try:
        with log.open("wb") as sink:  # written as it runs, to watch a long test
            subprocess.run(
                command,
                cwd=source / "tests",
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        broker.stop()
        (work / "broker.log").write_text("\n".join(broker.output) + "\n")
    seconds = time.monotonic() - started
    output = _ANSI.sub("", log.read_bytes().decode(errors="replace"))
    log.write_text(output)
    rows = parse_progress(output) | parse_summary(output)
    results = []
    for test in tests:
        if test.name in rows:
            state, test_seconds, detail = rows[test.name]
            results.append(_result(test.name, state, test_seconds or seconds, detail))
        elif timed_out:
            results.append(Result(test.name, "timeout", seconds, f"killed after {timeout_s:.0f}s"))
        else:
            results.append(Result(test.name, "no-result", seconds, "the runner did not report it"))
    return results


def parse_progress(output: str) -> dict[str, tuple[str, float, str]]:
    """What the runner's progress lines say of each test, for when it stopped before its
    summary (a failure in <MAIN> aborts it): "Test NAME PASSED", or "### Test "NAME (..)" failed
    at ..." with the reason on the next line."""
    rows: dict[str, tuple[str, float, str]] = {}
    lines = _ANSI.sub("", output).splitlines()
    for index, line in enumerate(lines):
        done = _PROGRESS_DONE.search(line)
        failed = _PROGRESS_FAILED.match(line)
        if done:
            rows.setdefault(done.group(1), (done.group(2), 0.0, ""))
        elif failed and failed.group(1) != "<MAIN>":
            reason = lines[index + 1].strip() if index + 1 < len(lines) else ""
            where = failed.group(2)
            rows.setdefault(failed.group(1), ("FAILED", 0.0, f"{where}: {reason}"[:300]))
    return rows


def select(
    suite: Iterable[SuiteTest], decisions: dict[str, str], numbers: set[str] | None
) -> tuple[list[list[SuiteTest]], list[Result]]:
    """The groups to run (by number and scenario) and the excluded tests as results."""
    groups: dict[tuple[str, str], list[SuiteTest]] = {}
    excluded = []
    for test in suite:
        if numbers is not None and test.number not in numbers:
            continue
        decision = decisions.get(test.name, RUN)
        if decision != RUN:
            excluded.append(Result(test.name, "excluded", 0.0, decision))
        else:
            groups.setdefault((test.number, test.scenario), []).append(test)
    return list(groups.values()), excluded


def format_table(results: Sequence[Result]) -> str:
    width = max([len(result.name) for result in results] + [4])
    lines = [f"{'test':<{width}}  {'result':<16}  {'seconds':>7}  detail"]
    for result in results:
        lines.append(
            f"{result.name:<{width}}  {result.result:<16}  {result.seconds:>7.1f}  {result.detail}"
        )
    counts: dict[str, int] = {}
    for result in results:
        counts[result.result] = counts.get(result.result, 0) + 1
    lines.append(", ".join(f"{count} {name}" for name, count in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samsa.tools.librdkafka_suite", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", type=Path, required=True, help="built librdkafka source")
    parser.add_argument("--tests", help="comma-separated test numbers (default: all)")
    parser.add_argument("--list", action="store_true", help="list the tests and decisions")
    parser.add_argument("--kafka-version", default=KAFKA_VERSION, help="TEST_KAFKA_VERSION")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S, help="per test number")
    parser.add_argument("--out", type=Path, help="where logs go (default: a new temp dir)")
    parser.add_argument("--excluded", action="store_true", help="also list excluded tests")
    args = parser.parse_args(argv)
    source: Path = args.source.resolve()
    suite = read_suite(source)
    decisions = read_decisions()
    unknown = sorted({test.name for test in suite} - decisions.keys())
    if unknown:
        print(f"not in {DATA_FILE} (run): {', '.join(unknown)}", file=sys.stderr)
    numbers = set(args.tests.split(",")) if args.tests else None
    groups, excluded = select(suite, decisions, numbers)
    if args.list:
        for test in suite:
            flags = ",".join(sorted(test.flags))
            print(f"{test.name:<50} {flags:<24} {decisions.get(test.name, RUN)}")
        return 0
    if not (source / "tests" / "test-runner").exists():
        print(f"{source}/tests/test-runner is missing: build the tests first", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="librdkafka-suite-"))
    print(f"logs: {out}", flush=True)
    results: list[Result] = []
    shimmed = kafka_topics_numbers()
    for group in groups:
        shim = group[0].number in shimmed
        for result in run_number(source, group, out, args.kafka_version, args.timeout_s, shim):
            print(
                f"{result.name}: {result.result} {result.seconds:.1f}s {result.detail}", flush=True
            )
            results.append(result)
    shown = results + (excluded if args.excluded else [])
    print(format_table(sorted(shown, key=lambda result: result.name)))
    return 0 if all(result.result in ("passed", "skipped-by-suite") for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
