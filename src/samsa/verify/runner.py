"""One verify run: start the target (a `samsa serve` subprocess behind the chaos proxy, an
embedded broker behind it, or any cluster by its bootstrap address), run the workload and the
nemesis, heal, drain, read everything back, check.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from samsa.chaos import EmbeddedChaosProxy
from samsa.progress import QUIET, Progress
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.process import BrokerProcess
from samsa.usage import UsageError
from samsa.verify import checker
from samsa.verify.faults import ALL_FAULTS, BROKER_FAULTS, PROXY_FAULTS, Nemesis
from samsa.verify.history import History, Op
from samsa.verify.workload import Workload, WorkloadConfig

WARM_UP_S = 1.0
PROGRESS_S = 0.5  # how often the workload's bar moves

SUBPROCESS = "subprocess"
EMBEDDED = "embedded"
EXTERNAL = "external"


@dataclass(slots=True)
class Options:
    duration_s: float = 60.0
    seed: int | None = None
    faults: tuple[str, ...] = ALL_FAULTS
    fault_interval_s: float = 3.0
    fault_apis: tuple[int, ...] | None = None  # lost-ack and cut target these (default: many)
    target: str = SUBPROCESS  # or EMBEDDED (in-process, proxy faults only) or EXTERNAL
    bootstrap: str | None = None  # EXTERNAL: the cluster to test; broker faults are off
    history_path: str | None = None
    data_dir: str | None = None
    broker_settings: Mapping[str, str] = field(default_factory=dict)
    workload: Mapping[str, Any] = field(default_factory=dict)  # WorkloadConfig overrides
    # The run's topics, groups and transactional ids are named PREFIX-...; None: a fresh prefix.
    topic_prefix: str | None = None
    reuse_topics: bool = False  # run on topics that exist already (their records count too)


@dataclass(slots=True)
class Target:
    bootstrap: str
    proxy: EmbeddedChaosProxy | None
    broker: BrokerProcess | None
    kinds: tuple[str, ...]


@contextmanager
def _target(options: Options) -> Iterator[Target]:
    wanted = options.faults
    if options.target == EXTERNAL:
        if options.bootstrap is None:
            raise ValueError("an external target needs a bootstrap address")
        kinds = tuple(k for k in wanted if k not in (*BROKER_FAULTS, *PROXY_FAULTS))
        yield Target(options.bootstrap, None, None, kinds)
        return
    with ExitStack() as stack:
        proxy = stack.enter_context(EmbeddedChaosProxy())
        data_dir = options.data_dir
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="samsa-verify-")
            stack.callback(shutil.rmtree, data_dir, True)
        settings = {
            **options.broker_settings,
            "advertised.listeners": f"PLAINTEXT://{proxy.bootstrap}",
        }
        if options.target == EMBEDDED:
            embedded = stack.enter_context(EmbeddedBroker(data_dir, settings))
            proxy.upstream = (embedded.host, embedded.port)
            kinds = tuple(k for k in wanted if k not in BROKER_FAULTS)
            yield Target(proxy.bootstrap, proxy, None, kinds)
            return
        broker = BrokerProcess(data_dir, settings)
        stack.callback(broker.stop)
        # The proxy before the broker: clients still running (after Ctrl-C) then meet a closed
        # port, not a proxy that warns it cannot reach a stopped broker.
        stack.callback(proxy.stop)
        broker.start()
        proxy.upstream = ("127.0.0.1", broker.port)
        yield Target(proxy.bootstrap, proxy, broker, tuple(wanted))


def run(options: Options, progress: Progress = QUIET) -> dict[str, Any]:
    """The report: see `report()`. `progress` hears of each phase."""
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 31)
    prefix = options.topic_prefix or fresh_prefix()
    history = History(options.history_path)
    try:
        progress.phase(
            f"connecting to {options.bootstrap}"
            if options.target == EXTERNAL
            else "starting the broker and the chaos proxy"
        )
        with _target(options) as target:
            config = WorkloadConfig(
                bootstrap=target.bootstrap, seed=seed, **{"prefix": prefix, **options.workload}
            )
            workload = Workload(config, history)
            existing = workload.existing_topics()
            if existing and not options.reuse_topics:
                raise UsageError(
                    f"topics {', '.join(existing)} exist from an earlier run, and their records "
                    "would read as anomalies: choose another --topic-prefix (or leave it out for "
                    "a fresh one), or pass --reuse-topics"
                )
            nemesis = Nemesis(
                history,
                seed,
                target.kinds,
                options.fault_interval_s,
                target.proxy,
                target.broker,
                workload.crash_one,
                options.fault_apis,
            )
            progress.phase(f"creating topics {prefix}-in and -out, starting the clients")
            workload.start()
            stopped = nemesis.stopping
            try:
                progress.phase(
                    f"workload under faults ({', '.join(target.kinds) or 'none'})",
                    total=options.duration_s,
                )
                if not stopped.wait(WARM_UP_S) and target.kinds:
                    nemesis.start()
                _wait(stopped, options.duration_s, progress)
            finally:
                if nemesis.is_alive():
                    nemesis.stop()
                else:
                    nemesis.heal()
            progress.phase("healed; stopping the writers, letting consumers drain")
            errors = workload.stop()
            progress.phase("reading every partition back")
            workload.final_reads()
            stats = target.proxy.stats().as_dict() if target.proxy is not None else None
    finally:
        history.close()
    ops = list(history)
    progress.phase(f"checking {len(ops)} operations")
    result = checker.check(ops)
    return {
        **report(ops, result, seed, options, kinds=target.kinds, errors=errors, proxy_stats=stats),
        "topic_prefix": prefix,
    }


def _wait(stopped: threading.Event, duration_s: float, progress: Progress) -> None:
    """Until the run's duration is over (counted from the start of the workload, warm-up
    included), or the nemesis stops it early."""
    started = time.monotonic() - WARM_UP_S
    while True:
        elapsed = time.monotonic() - started
        progress.update(min(elapsed, duration_s))
        if elapsed >= duration_s or stopped.wait(min(PROGRESS_S, duration_s - elapsed)):
            return


def fresh_prefix() -> str:
    """A run's own names, so runs against one cluster never read each other's records."""
    return f"verify-{uuid.uuid4().hex[:12]}"


def report(
    ops: list[Op],
    result: checker.Result,
    seed: int | None = None,
    options: Options | None = None,
    *,
    kinds: tuple[str, ...] = (),
    errors: list[str] | None = None,
    proxy_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One JSON-ready object: `ops` (counts by kind and outcome), `faults` (counts by kind,
    zeros included for the kinds enabled), `anomalies` (a count for every class checked) and
    `examples` (the first offending operations of each class)."""
    counts: dict[str, Counter[str]] = {}
    faults: Counter[str] = Counter({kind: 0 for kind in kinds})
    for op in ops:
        counts.setdefault(op.kind, Counter())[op.outcome] += 1
        if op.kind == "fault" and op.outcome == "ok" and op.action is not None:
            faults[op.action] += 1
    return {
        "seed": seed,
        "target": options.target if options else None,
        "duration_s": options.duration_s if options else None,
        "history": options.history_path if options else None,
        "valid": result.valid,
        "ops": {kind: dict(c) for kind, c in sorted(counts.items())},
        "faults": dict(sorted(faults.items())),
        "anomalies": result.counts(),
        "examples": {
            kind: [
                {"detail": a.detail, "ops": list(a.ops[:10])} for a in found[: checker.EXAMPLES_MAX]
            ]
            for kind, found in result.anomalies.items()
            if found
        },
        "client_errors": errors or [],
        "proxy": proxy_stats,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"samsa verify: seed {report['seed']}, target {report['target']}, "
        f"{report['duration_s']} s, history {report['history'] or '(not kept)'}"
        + (f", topics {report['topic_prefix']}-*" if report.get("topic_prefix") else ""),
        "",
        f"{'operation':<16} " + " ".join(f"{o:>9}" for o in ("ok", "failed", "unknown")),
    ]
    for kind, by_outcome in report["ops"].items():
        lines.append(
            f"{kind:<16} "
            + " ".join(f"{by_outcome.get(o, 0):>9}" for o in ("ok", "failed", "unknown"))
        )
    lines += ["", f"{'fault':<16} {'injected':>9}"]
    lines += [f"{kind:<16} {count:>9}" for kind, count in report["faults"].items()]
    lines += ["", f"{'anomaly':<22} {'count':>6}  meaning"]
    for kind, count in report["anomalies"].items():
        lines.append(f"{kind:<22} {count:>6}  {checker.DESCRIPTIONS[kind]}")
    for kind, examples in report["examples"].items():
        lines += ["", f"{kind}:"]
        lines += [f"  {e['detail']}  (ops {e['ops']})" for e in examples]
    for error in report["client_errors"]:
        lines.append(f"client error: {error}")
    lines += ["", "VALID: no anomaly found" if report["valid"] else "INVALID: anomalies found"]
    return "\n".join(lines)
