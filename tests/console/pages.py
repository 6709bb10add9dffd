"""Reading the console's pages in tests: plain HTTP, and the data- attributes the templates put
on what they show (the same ones the browser tests select by)."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Got:
    status: int
    body: str
    headers: dict[str, str]


def get(base_url: str, path: str) -> Got:
    return _open(urllib.request.Request(base_url.rstrip("/") + path))


def post(base_url: str, path: str, form: dict[str, str], origin: str | None = None) -> Got:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method="POST")
    if origin is not None:
        request.add_header("Origin", origin)
    return _open(request)


def _open(request: urllib.request.Request) -> Got:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body, status, headers = response.read().decode(), response.status, response.headers
    except urllib.error.HTTPError as error:
        body, status, headers = error.read().decode(), error.code, error.headers
    return Got(status, body, {k.lower(): v for k, v in headers.items()})


def batch_kinds(body: str) -> dict[int, str]:
    """Base offset -> data-kind of each batch in a partition page's timeline."""
    return {
        int(offset): kind
        for kind, offset in re.findall(r'data-kind="([a-z-]+)" data-base-offset="(\d+)"', body)
    }


def markers(body: str) -> dict[str, int]:
    return {
        name: int(offset)
        for name, offset in re.findall(r'data-marker="([a-z-]+)" data-offset="(-?\d+)"', body)
    }


def timeline_order(body: str) -> list[str]:
    """The timeline's items in order: 'marker:lso', 'batch:17', ..."""
    timeline = body[body.index('id="timeline"') :]
    timeline = timeline[: timeline.index("</div>")]
    return [
        f"marker:{m}" if m else f"batch:{b}"
        for m, b in re.findall(r'data-marker="([a-z-]+)"|data-base-offset="(\d+)"', timeline)
    ]


def reader_offsets(body: str, reader: str) -> list[int]:
    """The offsets in the read_committed or read_uncommitted column."""
    section = body[body.index(f'id="{reader}"') :]
    section = section[: section.index("</table>")]
    return [int(o) for o in re.findall(r'<tr class="k-[a-z-]+" data-offset="(\d+)"', section)]


def text(body: str) -> str:
    """The page's words, tags dropped, whitespace squeezed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
