"""`samsa chaos`: run the fault-injecting proxy in front of a broker until SIGINT or SIGTERM.

    samsa chaos --listen 127.0.0.1:19092 --upstream 127.0.0.1:9092 \\
        --seed 7 --drop-response-rate 0.05 --api produce

The broker must advertise the proxy's address (`--set advertised.listeners=PLAINTEXT://...`),
or clients bypass the proxy after their first Metadata request. A fault report is printed every
`--report-interval-s` and at exit; with `--json`, stdout gets exactly one JSON object at exit and
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from typing import Any, TextIO

from samsa import lifecycle
from samsa.chaos.proxy import Address, ChaosProxy
from samsa.chaos.schedule import Schedule
from samsa.protocol.apis import ApiKey
from samsa.usage import UsageError, positive_float

REPORT_INTERVAL_S = 10.0


def register(subparsers: Any) -> None:
    """Add the `chaos` subcommand to the `samsa` parser; its handler is `args.handler`."""
    parser = subparsers.add_parser(
        "chaos",
        help="run a fault-injecting proxy in front of a broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listen", type=address, default=("127.0.0.1", 19092))
    parser.add_argument("--upstream", type=address, default=("127.0.0.1", 9092))
    parser.add_argument("--seed", type=int, help="seed of the fault schedule (default: random)")
    parser.add_argument("--drop-response-rate", type=probability, default=0.0, metavar="P")
    parser.add_argument("--cut-rate", type=probability, default=0.0, metavar="P")
    parser.add_argument("--delay-ms", type=delay_range, metavar="A-B")
    parser.add_argument("--delay-rate", type=probability, default=1.0, metavar="P")
    parser.add_argument(
        "--api",
        type=api_key,
        action="append",
        help="only these apis get scheduled faults, by name or key (repeatable; default all)",
    )
    parser.add_argument("--report-interval-s", type=positive_float, default=REPORT_INTERVAL_S)
    parser.add_argument("--json", action="store_true", help="one JSON report at exit")
    parser.set_defaults(handler=run)


def address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0-65535), got {text!r}")
    return host, int(port)


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def delay_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        result = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MS or MIN-MAX, got {text!r}") from None
    if result[0] < 0 or result[1] < result[0]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return result


def api_key(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return int(ApiKey[text.upper().replace("-", "_")])
    except KeyError:
        known = ", ".join(key.name.lower() for key in ApiKey)
        raise argparse.ArgumentTypeError(f"unknown api {text!r} (known: {known})") from None


def schedule_from(args: argparse.Namespace) -> Schedule | None:
    if not (args.drop_response_rate or args.cut_rate or args.delay_ms):
        return None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    return Schedule(
        seed,
        drop_response_probability=args.drop_response_rate,
        cut_probability=args.cut_rate,
        delay_ms_range=args.delay_ms,
        delay_probability=args.delay_rate,
        api_keys=args.api,
    )


def run(args: argparse.Namespace) -> int:
    schedule = schedule_from(args)
    info: TextIO = sys.stderr if args.json else sys.stdout
    proxy = ChaosProxy(args.upstream, args.listen[0], args.listen[1], schedule)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lifecycle.stopper(stop, sig, received))
        try:
            await proxy.start()
        except OSError as exc:
            host, port = args.listen
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        listen = proxy.bootstrap
        upstream = f"{args.upstream[0]}:{args.upstream[1]}"
        plan = schedule.describe() if schedule is not None else "no schedule (pass-through)"
        print(f"samsa chaos listening on {listen}, upstream {upstream}", file=info)
        print(f"schedule: {plan}", file=info)
        print("ready", file=info, flush=True)
        try:
            while not stop.is_set():
                interval_s = args.report_interval_s if args.report_interval_s > 0 else None
                try:
                    await asyncio.wait_for(stop.wait(), interval_s)
                except TimeoutError:
                    print(proxy.stats().report(), file=info, flush=True)
        finally:
            await proxy.stop()
        if args.json:
            report = {
                "listen": listen,
                "upstream": upstream,
                "seed": None if schedule is None else schedule.seed,
                "stats": proxy.stats().as_dict(),
            }
            print(json.dumps(report), flush=True)
        else:
            print("samsa chaos stopped; final report:", file=info)
            print(proxy.stats().report(), file=info, flush=True)

    received: list[int] = []
    asyncio.run(main())
    if signal.SIGINT in received:  # after the final report: Ctrl-C exits 130, as a JVM does
        raise KeyboardInterrupt
    return 0
