"""Row shaping for CPU per membership: each profile once per walk, membership columns built
once per batch, the fast `joined_group_at` parse, batches handed to dlt as larger items, and
the request path's pool and proxy."""

from __future__ import annotations

import gc
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pytest

from sources.klaviyo.rows.buffer import TableBuffer
from sources.klaviyo.rows.emitted import EmittedProfiles
from sources.klaviyo.rows.memberships import (
    history_table,
    joined_group_at,
    joined_times,
    memberships_table,
)
from sources.klaviyo.rows.memory import give_back_memory
from sources.klaviyo.rows.profiles import profile_layout, profiles_table
from sources.klaviyo.rows.values import (
    finite_number,
    finite_number_column,
    json_bytes,
    json_column,
    json_text,
)

UTC = timezone.utc
KEY = "pk_" + "a1B2" * 8 + "c3"
WIDE = 2**70


def _profile(pid: str, **attributes: object) -> dict[str, Any]:
    return {"type": "profile", "id": pid, "attributes": attributes}


@pytest.mark.parametrize(
    "value",
    [
        "2024-03-26T17:24:42+00:00",
        "2024-03-26T17:24:42.123456+00:00",
        "2024-03-26T17:24:42.123456789Z",
        "2024-03-26T17:24:42Z",
        "2024-03-26T19:24:42+02:00",
        "2024-03-26T17:24:42-00:00",
        "2024-03-26 17:24:42+00:00",
        " 2024-03-26T17:24:42Z",
        "2024-03-26T17:24:42",
        "2024-03-26",
        "20240326T172442+00:00",
        "",
        "not a date",
        None,
        17,
        ["2024-03-26"],
    ],
)
def test_joined_times_parse_like_the_lenient_parser(value: object) -> None:
    profiles = [_profile("P1", joined_group_at=value)]
    (stamp,) = joined_times(profiles)
    expected = joined_group_at(profiles[0])
    assert stamp == expected
    assert stamp is None or stamp.tzinfo is UTC


def test_joined_times_of_profiles_without_attributes() -> None:
    profiles = [{"id": "P1"}, {"id": "P2", "attributes": None}]
    assert joined_times(profiles) == [None, None]


def test_a_walk_emits_each_profile_once() -> None:
    emitted = EmittedProfiles()
    walk = datetime(2026, 1, 1, tzinfo=UTC)
    first = emitted.fresh([_profile("P1", email="a"), _profile("P2"), _profile("P1")], walk)
    assert list(first) == ["P1", "P2"]
    assert first["P1"]["attributes"] == {"email": "a"}  # the first copy
    assert list(emitted.fresh([_profile("P2"), _profile("P3")], walk)) == ["P3"]
    # another walk (another detection time) emits everything again
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert list(emitted.fresh([_profile("P1"), _profile("P3")], later)) == ["P1", "P3"]
    emitted.forget()
    assert list(emitted.fresh([_profile("P1")], later)) == ["P1"]


def test_a_run_packs_the_ids_between_its_extractions_and_keeps_them() -> None:
    emitted = EmittedProfiles(across_walks=True)
    first, second = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)
    ids = [f"01HZ{n:022d}" for n in range(1000)]
    assert list(emitted.fresh(map(_profile, ids), first)) == ids
    emitted.walk_ended()
    assert emitted._ids == set() and emitted._packed is not None  # one string during the load
    fresh = emitted.fresh([_profile(ids[0]), _profile("P-new"), _profile(ids[-1])], second)
    assert list(fresh) == ["P-new"]
    assert emitted.fresh(map(_profile, ids), second) == {}
    emitted.walk_ended()
    emitted.walk_ended()  # a walk that ends again packs nothing twice
    assert list(emitted.fresh([_profile("P-new"), _profile("P-other")], second)) == ["P-other"]


def test_remembered_profiles_are_bounded() -> None:
    emitted = EmittedProfiles(limit=3)
    walk = object()
    assert list(emitted.fresh([_profile("P1"), _profile("P2")], walk)) == ["P1", "P2"]
    assert list(emitted.fresh([_profile("P1"), _profile("P3")], walk)) == ["P3"]
    # three ids remembered: the next batch starts afresh, copies pass again (never lost)
    assert list(emitted.fresh([_profile("P1"), _profile("P4")], walk)) == ["P1", "P4"]
    assert list(emitted.fresh([_profile("P4")], walk)) == []


def test_layouts_compare_without_their_emitted_profiles() -> None:
    layout = profile_layout(None, ())
    layout.emitted.fresh([_profile("P1")], object())
    assert layout == profile_layout(None, ())


class _Batch:
    """Stands for a `MembershipBatch`: what the membership columns are cached by."""


def _members(segment: str, *pids: str) -> list[tuple[str, dict[str, Any], datetime | None]]:
    joined = datetime(2024, 1, 1, tzinfo=UTC)
    return [(segment, _profile(pid), joined) for pid in pids]


def test_both_membership_tables_of_a_batch_share_its_columns() -> None:
    batch, members = _Batch(), _members("S1", "P1", "P2")
    history = history_table(members, (), batch)
    memberships = memberships_table(members, (), batch)
    shared = [table.column("profile_id").chunk(0).buffers()[2] for table in (history, memberships)]
    assert shared[0].address == shared[1].address  # built once, not copied
    assert history.column("profile_id").to_pylist() == ["P1", "P2"]
    assert memberships.column("is_member").to_pylist() == [True, True]
    assert memberships.column("left_at").to_pylist() == [None, None]


def test_another_batch_never_gets_the_last_batchs_columns() -> None:
    first = _Batch()
    memberships_table(_members("S1", "P1"), (), first)
    second = _Batch()
    table = memberships_table(_members("S2", "P9", "P8"), (), second)
    assert table.column("segment_id").to_pylist() == ["S2", "S2"]
    assert table.column("profile_id").to_pylist() == ["P9", "P8"]
    del first, second
    gc.collect()
    # a new batch made where the old one was freed is still a new batch
    assert memberships_table(_members("S3", "P7"), (), _Batch()).num_rows == 1


def test_history_skips_stays_without_a_start_and_keeps_the_order() -> None:
    members = [*_members("S1", "P1"), ("S1", _profile("P2"), None), *_members("S1", "P3")]
    table = history_table(members, (), _Batch())
    assert table.column("profile_id").to_pylist() == ["P1", "P3"]
    assert memberships_table(members, (), _Batch()).num_rows == 3


def test_json_column_is_json_text_of_each_value() -> None:
    values = [{"a": [1, 2.5, None]}, None, "text", 7, {"wide": WIDE}, {"k": "é\u2028"}]
    column = json_column(values)
    assert str(column.type) == "string"
    assert column.to_pylist() == [json_text(value) for value in values]
    assert json_column([None, {"a": 1}]).to_pylist() == [None, '{"a":1}']
    # JSON text made earlier (by the walk, as bytes) is taken as it is
    made = [None if value is None else json_bytes(value) for value in values]
    assert json_column(made).to_pylist() == column.to_pylist()
    assert json_column([made[4], {"b": WIDE}]).to_pylist() == [
        json_text({"wide": WIDE}),
        json_text({"b": WIDE}),
    ]


def test_profiles_table_keeps_the_last_copy_of_a_profile() -> None:
    layout = profile_layout(None, ())
    rows = profiles_table([_profile("P1", email="a"), _profile("P1", email="b")], layout)
    assert rows.to_pylist()[0]["email"] == "b"


def test_coordinates_from_numbers_text_and_odd_values() -> None:
    layout = profile_layout(["location"], ())
    values: list[object] = [1.5, "42.36", "east", None, True, float("inf"), "nan", 7, -0.0]
    profiles = [_profile(f"P{i}", location={"latitude": v}) for i, v in enumerate(values)]
    table = profiles_table(profiles, layout)
    assert table.column("location_latitude").to_pylist() == [
        1.5,
        42.36,
        None,
        None,
        None,
        None,
        None,
        7.0,
        -0.0,
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # numbers only: arrow converts them
        ([1.5, None, 7, -0.0, float("nan"), float("-inf")], [1.5, None, 7.0, -0.0, None, None]),
        # numbers and numeric text, as Klaviyo documents coordinates
        (["42.36", 35.6, None, "-1e5", "1e400", "inf"], [42.36, 35.6, None, -1e5, None, None]),
        # text arrow refuses: Python reads it the same way as before
        ([" 4", "1_000", "east", 2.5], [4.0, 1000.0, None, 2.5]),
        # integers beyond a double (or 64 bits), booleans, objects: value by value
        (
            [10**400, -(10**400), 2**70, True, {"a": 1}, 3],
            [None, None, float(2**70), None, None, 3.0],
        ),
    ],
)
def test_coordinates_convert_by_arrow_as_python_would(
    values: list[Any], expected: list[float | None]
) -> None:
    column = finite_number_column(values)

    assert column.type == pa.float64()
    assert column.to_pylist() == expected == [finite_number(value) for value in values]


def test_giving_memory_back_is_harmless() -> None:
    give_back_memory()
    give_back_memory()


def _numbers(*values: int) -> pa.Table:
    return pa.table({"n": pa.array(values, pa.int64())})


def test_buffered_tables_are_handed_on_together_once_enough_rows_are_held() -> None:
    buffer = TableBuffer(rows=4, max_bytes=2**30)
    assert list(buffer.add(_numbers(1, 2))) == []
    assert list(buffer.add(None)) == []  # a batch without rows for this table
    assert list(buffer.add(_numbers())) == []
    (item,) = buffer.add(_numbers(3, 4, 5))
    assert item.column("n").to_pylist() == [1, 2, 3, 4, 5]
    assert list(buffer.add(_numbers(6))) == []
    (last,) = buffer.add(None, last=True)
    assert last.column("n").to_pylist() == [6]
    assert list(buffer.add(None, last=True)) == []  # nothing held: no empty item


def test_wide_buffered_tables_are_handed_on_by_bytes() -> None:
    buffer = TableBuffer(rows=10**6, max_bytes=3 * 8)  # three int64 values
    assert list(buffer.add(_numbers(1, 2))) == []
    (item,) = buffer.add(_numbers(3))
    assert item.num_rows == 3
