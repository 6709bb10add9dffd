# The C record walk (_walk.c); samsa.protocol.records_walk is its reference and fallback.
def walk(
    data: bytes, start: int, count: int, keys_required: bool, /
) -> tuple[int, int, list[int]]: ...
