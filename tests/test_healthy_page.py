"""The listing's fast path (``_healthy_page``) answers only when its answer is the tolerant path's.

Pages are generated well formed, with odd items, with a corrupted run, and in odd encodings (JSON
that ``json.loads`` takes and msgspec refuses, duplicate keys, escaped key names); on each, the
fast path either declines (None) or gives exactly the ids and cursor that ``json.loads`` plus
``RunBrief.from_json`` give; and on a plainly encoded page whose items all parse and are healthy
it must not decline, or the listing would pay the slow path's CPU (issue 16).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker_recovery as tr
from tinker_recovery._healthy_page import healthy_page
from tinker_recovery.rest import _briefs_of, _Healthy, _healthy_or_json

LEAVES = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=6)  # fmt: skip
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
RUN_IDS = st.text(min_size=1, max_size=12)


ODD = st.sampled_from([0, 1, 0.0, "", "false", "true", [], {}, [{}], None, False, True]) | VALUES


@st.composite
def items(draw) -> object:
    """A listing item: mostly well formed; else not an object, or one of the three fields odd."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return draw(VALUES)  # not an item at all
    item: dict[str, object] = {"training_run_id": draw(RUN_IDS), "base_model": "m"}
    if draw(st.booleans()):
        item["corrupted"] = draw(ODD) if kind == 2 else draw(st.booleans())
    if draw(st.booleans()):
        item["last_checkpoint"] = (
            draw(ODD)
            if kind == 3
            else draw(st.none() | st.dictionaries(st.text(max_size=5), VALUES, max_size=3))
        )
    if kind == 1:
        item["training_run_id"] = draw(ODD)
    if draw(st.booleans()):
        item[draw(st.text(max_size=8))] = draw(VALUES)  # another field, or one of the three again
    return item


CURSORS = st.fixed_dictionaries(
    {"offset": st.integers(0, 10**6), "limit": st.integers(1, 1000), "total_count": st.integers(0, 10**6)}
) | st.dictionaries(st.sampled_from(["offset", "limit", "total_count", "x"]), VALUES, max_size=4)


@st.composite
def pages(draw) -> dict:
    page = {"training_runs": draw(st.lists(items(), max_size=6)), "cursor": draw(CURSORS)}
    if draw(st.integers(0, 9)) == 0:
        page = draw(st.dictionaries(st.sampled_from(["training_runs", "cursor"]), VALUES, max_size=2))
    return page


def tolerant(body: bytes) -> tuple[list[str], bool, int, object] | None:
    """What the tolerant path reads: (ids, any corrupted, skipped, cursor), None when it raises."""
    try:
        data = json.loads(body)
        briefs, cursor, skipped = _briefs_of(data, 0)
    except (ValueError, tr.ResponseError):
        return None
    return [b.training_run_id for b in briefs], any(b.corrupted for b in briefs), skipped, cursor


def items_read(body: bytes) -> tuple[list[str], bool, int] | None:
    """The tolerant path's items alone (the cursor aside): (ids, any corrupted, skipped)."""
    try:
        data = json.loads(body)
        briefs, _cursor, skipped = _briefs_of(
            {**data, "cursor": {"offset": 0, "limit": 1, "total_count": 0}}, 0
        )
    except (ValueError, TypeError, tr.ResponseError):
        return None
    return [b.training_run_id for b in briefs], any(b.corrupted for b in briefs), skipped


def check(body: bytes) -> None:
    fast = healthy_page(body)
    if fast is not None:  # the items are the tolerant path's, all healthy; the cursor as decoded
        run_ids, raw_cursor = fast
        assert items_read(body) == (run_ids, False, 0), body
        assert raw_cursor == json.loads(body)["cursor"], body
    slow = tolerant(body)
    decoded = _healthy_or_json(body, "GET /x") if slow is not None else None
    if isinstance(decoded, _Healthy):  # the cursor checked too: the whole answer is the same
        assert slow is not None and (decoded.run_ids, decoded.cursor) == (slow[0], slow[3])


@settings(max_examples=400, deadline=None)
@given(page=pages(), indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans())
def test_the_fast_path_gives_the_tolerant_answer_or_none(page, indent, ascii_only):
    body = json.dumps(page, indent=indent, ensure_ascii=ascii_only).encode()
    check(body)
    slow = tolerant(body)
    if slow is not None and not slow[1] and slow[2] == 0:  # every item parses and is healthy
        assert isinstance(_healthy_or_json(body, "GET /x"), _Healthy), body  # the fast path took it


@settings(max_examples=300, deadline=None)
@given(page=pages(), edit=st.integers(0, 6), at=st.integers(0, 10**6))
def test_odd_encodings_never_make_the_fast_path_disagree(page, edit, at):
    body = json.dumps(page, separators=(",", ":")).encode()
    if edit == 0:
        body = b"\xef\xbb\xbf" + body  # a byte-order mark: json.loads takes it, msgspec does not
    elif edit == 1:  # a second "corrupted" in an item, which wins in json.loads
        body = body.replace(
            b'"training_run_id":', b'"corrupted":false,"corrupted":true,"training_run_id":', 1
        )
    elif edit == 2:  # the same, the other way round
        body = body.replace(
            b'"training_run_id":', b'"corrupted":true,"corrupted":false,"training_run_id":', 1
        )
    elif edit == 3:  # the key name escaped: still "corrupted" to a JSON reader
        body = body.replace(b'"training_run_id":', b'"corrupt\\u0065d":true,"training_run_id":', 1)
    elif edit == 4:
        body = body.replace(b'"training_run_id":', b'"corrupted":NaN,"training_run_id":', 1)
    elif edit == 5 and body:
        body = body[: at % len(body)]  # cut short
    elif edit == 6:
        body = body.replace(b'"training_run_id":"', b'"training_run_id":"\\ud800', 1)  # a lone surrogate
    check(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"training_runs":[{"training_run_id":"a","corrupted":false,"corrupted":true}],'
        b'"cursor":{"offset":0,"limit":1,"total_count":1}}',
        b'{"training_runs":[{"training_run_id":"a","corrupt\\u0065d":true}],'
        b'"cursor":{"offset":0,"limit":1,"total_count":1}}',
        b'{"training_runs":[{"training_run_id":"a","corrupted":true}],"training_runs":[],'
        b'"cursor":{"offset":0,"limit":1,"total_count":1}}',
    ],
)
def test_a_corrupted_run_is_never_read_as_healthy(body):
    check(body)
    assert healthy_page(body) is None or tolerant(body)[1] is False


def test_a_healthy_page_gives_its_ids_in_order_and_a_corrupted_one_declines():
    page = {
        "training_runs": [{"training_run_id": "b", "extra": [1, {"x": None}]}, {"training_run_id": "a"}],
        "cursor": {"offset": 0, "limit": 2, "total_count": 2},
    }
    assert healthy_page(json.dumps(page).encode()) == (["b", "a"], page["cursor"])
    page["training_runs"][1]["corrupted"] = True
    assert healthy_page(json.dumps(page).encode()) is None
    assert healthy_page(b'{"training_runs":[],"cursor":{}}') == ([], {})
    null = b'{"training_runs":[{"training_run_id":"a","corrupted":null,"last_checkpoint":null}],"cursor":{}}'
    assert healthy_page(null) == (["a"], {}) and items_read(null) == (["a"], False, 0)  # null: absent
    assert healthy_page(b"") is None and healthy_page(b"[" * 100_000) is None
