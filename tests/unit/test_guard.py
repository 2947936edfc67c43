"""The request guard's building blocks, without a server: the nesting check and the JSON answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from serving.api.guard import _census, scan
from serving.api.responses import json_response

# strings full of what the check must not be fooled by: brackets, quotes and backslashes
_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ aé:,'), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(_JSON, st.integers(0, 8), st.booleans())
def test_the_nesting_check_agrees_with_the_parsed_depth(value, limit, ascii_only) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert (scan(body)[0] > limit) == (_depth(value) > limit)


def _members(value: Any) -> int:
    if isinstance(value, list):
        return sum(map(_members, value))
    if isinstance(value, dict):
        return len(value) + sum(map(_members, value.values()))
    return 0


@given(_JSON, st.booleans())
def test_the_member_count_agrees_with_the_parsed_body(value, ascii_only) -> None:
    """The guard finds a key sent twice by comparing this count with the parsed body's:
    colons inside strings (keys and values alike) must not count."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert scan(body)[1] == _members(value)
    assert _census({"v": value})[0] == _members(value) + 1


def test_a_released_answer_is_sent_whole_then_freed() -> None:
    body = {"results": [{"index": i, "ok": True} for i in range(3)], "model": {"v": "1"}}
    expected = json.loads(json.dumps(body))
    sent: list[tuple[str, bool]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], body == expected))  # was the answer still whole?

    response = json_response(body, release=True)
    asyncio.run(response({"type": "http"}, None, send))  # type: ignore[arg-type]
    assert json.loads(response.body) == expected
    assert sent == [("http.response.start", True), ("http.response.body", True)]
    assert body == {}  # emptied once sent: its objects are freed off the answer's path
