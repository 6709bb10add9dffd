"""The console's web application (Starlette): server-rendered pages, one small script for live
updates, and the two actions that change state, refused unless the console was started with
`allow_writes`.

    /                                    brokers, topics, partitions with LSO and HW
    /topics/{topic}/{partition}          the partition's log as batches (?from=OFFSET&batch=OFFSET)
    /transactions                        ListTransactions + DescribeTransactions, hanging ones
    /producers                           DescribeProducers for every partition
    /groups, /groups/{group}             members, assignment, committed offsets, lag
    /events                              server-sent events: the poller's version
    POST /transactions/abort             WriteTxnMarkers ABORT (allow_writes only)
    POST /groups/{group}/reset           OffsetCommit for an empty group (allow_writes only)

Any page with `?fragment=1` is just its <main>, which the live script swaps in.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode

from kio.schema.errors import ErrorCode
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from samsa.admin.client import AdminError
from samsa.console import views
from samsa.console.cluster import Cluster, Unsupported
from samsa.console.live import Pages, Poller
from samsa.console.model import Kind

EVENTS_CHECK_S = 0.2  # how often an event stream looks at the poller's version (in memory)
EVENTS_KEEPALIVE_S = 15.0
FORM_BYTES_MAX = 4096
_ASSETS = files("samsa.console")


@dataclass(frozen=True, slots=True)
class Console:
    cluster: Cluster
    poller: Poller
    pages: Pages
    allow_writes: bool


def create_app(console: Console) -> Starlette:
    templates = Jinja2Templates(directory=str(_ASSETS / "templates"))
    templates.env.globals.update(Kind=Kind, fmt_ms=_fmt_ms, fmt_age=_fmt_age)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        fragment = request.query_params.get("fragment") == "1"
        context = {
            **context,
            "fragment": fragment,
            "allow_writes": console.allow_writes,
            "poll_interval_s": console.poller.interval_s,
            "poll_error": console.poller.error,
            "version": console.poller.version,
            "bootstrap": console.cluster.bootstrap,
        }
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["X-Console-Version"] = str(console.poller.version)
        return response

    def page(request: Request, name: str, key: tuple[Any, ...], compute: Any) -> Response:
        try:
            data = console.pages.get(key, compute)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        except Unsupported as exc:
            return render(request, "error.html", {"title": "unsupported", "message": str(exc)})
        except (AdminError, OSError) as exc:
            console.cluster.forget_metadata()
            message = f"cannot reach the cluster: {exc}"
            return render(request, "error.html", {"title": "error", "message": message}, 503)
        return render(request, name, {"page": data, "title": key[0]})

    def overview(request: Request) -> Response:
        return page(
            request, "overview.html", ("overview",), lambda: views.overview(console.cluster)
        )

    def partition(request: Request) -> Response:
        topic = request.path_params["topic"]
        index = int(request.path_params["partition"])
        from_offset = _int_param(request, "from")
        batch = _int_param(request, "batch")
        return page(
            request,
            "partition.html",
            ("partition", topic, index, from_offset, batch),
            lambda: views.partition(console.cluster, topic, index, from_offset, batch),
        )

    def transactions(request: Request) -> Response:
        return page(
            request,
            "transactions.html",
            ("transactions",),
            lambda: views.transactions(console.cluster, time.time_ns() // 1_000_000),
        )

    def producers(request: Request) -> Response:
        return page(
            request, "producers.html", ("producers",), lambda: views.producers(console.cluster)
        )

    def groups(request: Request) -> Response:
        wanted = request.query_params.get("id")
        if wanted:  # the form for a cluster without ListGroups
            return RedirectResponse(request.url_for("group", group=wanted), 303)
        return page(request, "groups.html", ("groups",), lambda: views.groups(console.cluster))

    def group(request: Request) -> Response:
        group_id = request.path_params["group"]
        return page(
            request,
            "group.html",
            ("group", group_id),
            lambda: views.group(console.cluster, group_id),
        )

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = -1
            quiet_s = 0.0
            yield f"retry: {int(max(console.poller.interval_s, 1) * 1000)}\n\n"
            while not await request.is_disconnected():
                if console.poller.version != seen:
                    seen = console.poller.version
                    quiet_s = 0.0
                    yield f"data: {seen}\n\n"
                elif quiet_s >= EVENTS_KEEPALIVE_S:
                    quiet_s = 0.0
                    yield ": keepalive\n\n"
                await asyncio.sleep(EVENTS_CHECK_S)
                quiet_s += EVENTS_CHECK_S

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def abort(request: Request) -> Response:
        form = await _write_form(request, console)
        topic, index, producer_id = (
            _field(form, "topic"),
            _number(form, "partition"),
            _number(form, "producer_id"),
        )

        def run() -> str:
            found = console.cluster.describe_producers([(topic, index)]).get((topic, index), ())
            state = next((p for p in found if int(p.producer_id) == producer_id), None)
            if state is None or int(state.current_txn_start_offset) < 0:
                return f"producer {producer_id} has no open transaction on {topic}-{index}"
            # A partition no coordinator wrote a marker to reports coordinator epoch -1; the
            # lowest real one is 0 (Kafka's AbortTransactionHandler does the same).
            error = console.cluster.abort_transaction(
                topic,
                index,
                producer_id,
                int(state.producer_epoch),
                max(int(state.coordinator_epoch), 0),
            )
            if error != ErrorCode.none:
                return f"abort failed: {error.name}"
            return f"aborted producer {producer_id}'s transaction on {topic}-{index}"

        return await _act(request, console, run, "/transactions")

    async def reset(request: Request) -> Response:
        group_id = request.path_params["group"]
        form = await _write_form(request, console)
        topic, index, offset = (
            _field(form, "topic"),
            _number(form, "partition"),
            _number(form, "offset"),
        )

        def run() -> str:
            error = console.cluster.reset_offsets(group_id, {(topic, index): offset})
            if error != ErrorCode.none:
                return f"reset failed: {error.name} (the group must have no members)"
            return f"{group_id}: {topic}-{index} reset to {offset}"

        return await _act(request, console, run, f"/groups/{group_id}")

    routes = [
        Route("/", overview),
        Route("/topics/{topic}/{partition:int}", partition, name="partition"),
        Route("/transactions", transactions),
        Route("/transactions/abort", abort, methods=["POST"]),
        Route("/producers", producers),
        Route("/groups", groups),
        Route("/groups/{group}", group, name="group"),
        Route("/groups/{group}/reset", reset, methods=["POST"]),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=str(_ASSETS / "static")), name="static"),
    ]
    return Starlette(routes=routes)


def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None


async def _write_form(request: Request, console: Console) -> dict[str, str]:
    if not console.allow_writes:
        raise HTTPException(403, "read-only console: start it with --allow-writes to change state")
    # A form another site posts carries that site's Origin: refuse it (no CSRF).
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-origin request refused")
    # The console's forms are urlencoded (no files), which the standard library parses.
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        raise HTTPException(413, "form too large")
    return {key: values[-1] for key, values in parse_qs(body.decode(errors="replace")).items()}


def _field(form: dict[str, str], name: str) -> str:
    if name not in form:
        raise HTTPException(400, f"the form has no {name}")
    return form[name]


def _number(form: dict[str, str], name: str) -> int:
    try:
        return int(_field(form, name))
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None


async def _act(request: Request, console: Console, run: Any, back: str) -> Response:
    try:
        message = await asyncio.to_thread(run)
    except (Unsupported, AdminError, OSError) as exc:
        message = str(exc)
    console.pages.forget()
    return RedirectResponse(f"{back}?{_query(message)}", 303)


def _query(message: str) -> str:
    return urlencode({"said": message})


def _fmt_ms(ms: int) -> str:
    if ms <= 0:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%H:%M:%S.%f")[:-3]


def _fmt_age(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    if ms < 10_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min {ms // 1000 % 60} s"
    return f"{ms / 3_600_000:.1f} h"
