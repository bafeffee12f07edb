"""The server's payload check over a whole batch (``server._ingest``): payloads are
checked joined, and a batch decodes to exactly what checking each payload alone gives, for
payloads of every kind, compact or not, with blanks inside strings or between tokens."""

from __future__ import annotations

import json
import random
import uuid

import msgspec
import pytest

from localevents._exceptions import InvalidEventError
from localevents._settings import get_settings
from localevents.server._ingest import decode_events
from localevents.storage._rows import compact_payload

ID = "prefect.resource.id"
_BLANKS = (" ", "\t", "\n", "\r")


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(["text", "number", "list", "object", "literal"] if depth < 3 else ["text"])
    if kind == "text":
        return rng.choice(["plain", "two words", "tab\there", "line\nbreak", "é ☃", '"q"', ""])
    if kind == "number":
        return rng.choice([0, -1, 2.5, 1e20, 12345678901234567890])
    if kind == "literal":
        return rng.choice([True, False, None])
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randrange(3))}


def _spelt(value: object, rng: random.Random, *, compact: bool) -> str:
    """``value`` as JSON, compact or (unless ``compact``) maybe with blanks between its
    tokens."""
    if compact or rng.random() < 0.7:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, indent=rng.choice([None, 1, "\t"]))


def _payload(rng: random.Random, *, compact: bool) -> str:
    if rng.random() < 0.05:  # not an object: the batch is refused
        return _spelt(rng.choice([[1], "text", 5, None, True]), rng, compact=compact)
    spelt = _spelt({f"p{i}": _value(rng) for i in range(rng.randrange(4))}, rng, compact=compact)
    if not compact and rng.random() < 0.1:  # blanks around the object itself
        spelt = rng.choice(_BLANKS) + spelt + rng.choice(_BLANKS)
    return spelt


def _body(payloads: list[str]) -> bytes:
    head = '{"occurred":"2026-01-02T03:04:05Z","event":"acme.x","resource":{"' + ID + '":"r"},'
    events = [f'{head}"id":"{uuid.uuid4()}","payload":{payload}}}' for payload in payloads]
    return ("[" + ",".join(events) + "]").encode()


def _expected(payloads: list[str]) -> list[bytes] | int:
    """Each event's payload as the store loads it, checking each alone; or the index of
    the first that is no object."""
    found = []
    for index, payload in enumerate(payloads):
        raw = msgspec.json.decode(payload.encode(), type=msgspec.Raw)
        if not bytes(raw).lstrip().startswith(b"{"):
            return index
        found.append(bytes(compact_payload(raw)))
    return found


@pytest.mark.parametrize("seed", range(40))
def test_a_batch_decodes_as_checking_each_payload_alone_would(seed: int) -> None:
    """Random batches of 1-60 payloads (every other one written compact throughout, as
    most clients send): the stored payloads are each one made compact, and a batch holding
    one that is no object is refused naming that one's index."""
    rng = random.Random(seed)
    compact = seed % 2 == 0
    payloads = [_payload(rng, compact=compact) for _ in range(rng.randrange(1, 60))]
    expected = _expected(payloads)
    body = _body(payloads)
    if isinstance(expected, int):
        with pytest.raises(InvalidEventError, match=rf"index {expected}: Expected `object`"):
            decode_events(body, get_settings())
        return
    batch = decode_events(body, get_settings())
    lines = [msgspec.json.decode(line) for line in batch.split_lines()]
    stored = [msgspec.json.encode(line["payload"]) for line in lines]
    assert stored == [msgspec.json.encode(msgspec.json.decode(p)) for p in expected]
    assert [bytes(e.payload) for e in batch.events] == expected  # compact, as sent
    assert all(b"\n" not in line for line in batch.split_lines())
