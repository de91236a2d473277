"""Pure functions of the source: datetimes, filters, the limiter, row shaping, redaction."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from sources.klaviyo import klaviyo_source, settings
from sources.klaviyo.api.endpoints import (
    api_path,
    joined_since_filter,
    profile_ids_page_size,
    profile_params,
)
from sources.klaviyo.api.ratelimit import EndpointLimiter, Interrupted
from sources.klaviyo.dates import format_filter_datetime, parse_datetime, utc_now
from sources.klaviyo.exceptions import (
    KlaviyoAuthError,
    KlaviyoConfigError,
    find_klaviyo_error,
    redact,
)
from sources.klaviyo.options import validate_options
from sources.klaviyo.rows import profiles as profile_rows
from sources.klaviyo.rows.memberships import history_table, memberships_table
from sources.klaviyo.rows.profiles import profile_layout, profiles_table
from sources.klaviyo.rows.segments import (
    segment_state_row,
    segment_tag_changes,
    segment_tag_ids,
    segment_tombstone,
)
from sources.klaviyo.typing import Closure
from sources.klaviyo.walk.plan import plan_walks
from sources.klaviyo.walk.reconcile import MembershipComparison, ReconcilePolicy

UTC = timezone.utc


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-03-26T17:24:42+00:00", datetime(2024, 3, 26, 17, 24, 42, tzinfo=UTC)),
        ("2024-03-26T17:24:42Z", datetime(2024, 3, 26, 17, 24, 42, tzinfo=UTC)),
        ("2023-07-24 20:15:57+00:00", datetime(2023, 7, 24, 20, 15, 57, tzinfo=UTC)),
        ("2023-08-15T12:30:00.71Z", datetime(2023, 8, 15, 12, 30, 0, 710000, tzinfo=UTC)),
        ("2023-08-15T12:30:00.123456789Z", datetime(2023, 8, 15, 12, 30, 0, 123456, tzinfo=UTC)),
        ("2023-08-15T14:30:00+02:00", datetime(2023, 8, 15, 12, 30, tzinfo=UTC)),
        ("2023-08-15T12:30:00", datetime(2023, 8, 15, 12, 30, tzinfo=UTC)),
        ("2023-02-07", datetime(2023, 2, 7, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
        (None, None),
        (17, None),
    ],
)
def test_parse_datetime_is_lenient(text: object, expected: datetime | None) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


def test_filter_is_utc_z_whole_seconds_and_clamped() -> None:
    moment = datetime(2024, 1, 2, 5, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert format_filter_datetime(moment) == "2024-01-02T03:04:05Z"
    assert joined_since_filter(moment) == "greater-or-equal(joined_group_at,2024-01-02T03:04:05Z)"
    now = datetime(2024, 1, 1, tzinfo=UTC)
    future = now + timedelta(days=3)
    assert joined_since_filter(future, now=now).endswith(",2024-01-01T00:00:00Z)")
    clamped = parse_datetime(joined_since_filter(utc_now() + timedelta(days=1)).split(",")[1][:-1])
    assert clamped is not None and clamped <= utc_now()


def test_paths_follow_the_revision() -> None:
    template = "/api/segments/{segment_id}/profiles/"
    assert api_path(template, "2024-06-15", segment_id="Ab1") == "/api/segments/Ab1/profiles/"
    assert api_path(template, "2024-10-15", segment_id="Ab1") == "/api/segments/Ab1/profiles"
    assert api_path(template, "2026-07-15.pre", segment_id="Ab1") == "/api/segments/Ab1/profiles"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_burst_and_steady_windows() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(burst=3, steady=5, clock=clock)

    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(1.0)
    clock.now += 1.0
    assert [limiter.try_acquire() for _ in range(2)] == [0.0, 0.0]
    # five in the last minute: the steady window is full until the first ages out
    assert limiter.try_acquire() == pytest.approx(59.0)
    clock.now += 59.0
    assert limiter.try_acquire() == 0.0


def test_limiter_follows_klaviyo_reports_of_the_steady_window() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(burst=100, steady=2, clock=clock)
    limiter.try_acquire()
    limiter.try_acquire()
    assert limiter.delay() == pytest.approx(60.0)

    # Klaviyo says there is room (its window started later): trust it while it is current
    limiter.observe(remaining=1, reset=20)
    assert limiter.try_acquire() == 0.0
    assert limiter.delay() == pytest.approx(20.0)
    # another client used the account up: wait for Klaviyo's reset, not our own log
    limiter.observe(remaining=0, reset=5)
    assert limiter.delay() == pytest.approx(5.0)
    clock.now += 5.0
    # the report expired: back to the local log (three sends in the last minute)
    assert limiter.delay() == pytest.approx(55.0)
    limiter.observe(remaining=None, reset=None)
    assert limiter.delay() == pytest.approx(55.0)


def test_limiter_takes_requests_sent_after_the_answered_one_off_klaviyos_count() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(burst=100, steady=100, clock=clock)
    answered = limiter.acquire()
    in_flight = [limiter.acquire() for _ in range(3)]
    assert [a.ticket for a in in_flight] == [2, 3, 4]
    # Klaviyo counted the answered request only: 4 left for it means 1 left for us
    limiter.observe(remaining=4, reset=30, ticket=answered.ticket)
    assert limiter.try_acquire() == 0.0
    assert limiter.delay() == pytest.approx(30.0)
    # the last request's answer already counts everything sent before it
    limiter.observe(remaining=2, reset=30, ticket=5)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(30.0)


def test_limiter_pause_holds_every_thread() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(burst=10, steady=100, clock=clock)
    limiter.pause(3.0)
    assert limiter.try_acquire() == pytest.approx(3.0)
    limiter.pause(1.0)  # a shorter pause does not shorten the longer one
    assert limiter.delay() == pytest.approx(3.0)
    clock.now += 3.0
    assert limiter.try_acquire() == 0.0


def test_limiter_wait_is_interruptible() -> None:
    limiter = EndpointLimiter(burst=1, steady=1)
    limiter.acquire()
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        limiter.acquire(stop)


def test_limiter_shared_by_threads_never_exceeds_its_window() -> None:
    limiter = EndpointLimiter(burst=20, steady=1000, burst_window=0.2)
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent.sort()
    assert len(sent) == 50
    assert all(
        later - earlier >= 0.2 - 1e-3 for earlier, later in zip(sent, sent[20:], strict=False)
    )


def _profile(pid: str, **attributes: object) -> dict[str, object]:
    return {"type": "profile", "id": pid, "attributes": attributes}


def test_profiles_table_flattens_location_and_keeps_properties_whole() -> None:
    layout = profile_layout(None, ())
    table = profiles_table(
        [
            _profile(
                "P1",
                email="a@example.com",
                created="2024-03-26T17:24:42+00:00",
                location={"city": "Boston", "latitude": "42.36", "longitude": "east", "zip": 2110},
                properties={"plan": "pro", "nested": {"a": [1, 2]}},
            ),
            _profile("P2", email="b@example.com", location=None, properties=None),
            _profile("P1", email="a2@example.com", location={"latitude": 1.5}),
        ],
        layout,
    )

    rows = {row["id"]: row for row in table.to_pylist()}
    assert table.num_rows == 2
    assert rows["P1"]["email"] == "a2@example.com"  # the last copy of a profile wins
    assert rows["P1"]["location_latitude"] == 1.5
    assert "location" not in table.column_names and "properties" in table.column_names
    first = profiles_table(
        [
            _profile(
                "P1",
                location={"latitude": "42.36", "longitude": "east", "zip": 2110},
                properties={"plan": "pro"},
                created="2024-03-26T17:24:42Z",
            )
        ],
        layout,
    ).to_pylist()[0]
    assert first["location_latitude"] == pytest.approx(42.36)
    assert first["location_longitude"] is None
    assert first["location_zip"] == "2110"
    assert json.loads(first["properties"]) == {"plan": "pro"}
    assert first["created"] == datetime(2024, 3, 26, 17, 24, 42, tzinfo=UTC)
    assert rows["P2"]["properties"] is None and rows["P2"]["location_city"] is None
    assert str(table.schema.field("created").type) == "timestamp[us, tz=UTC]"


def test_profile_layout_from_requested_fields() -> None:
    layout = profile_layout(["email", "location.city", "location.latitude", "joined_group_at"], ())
    assert layout.strings == ("email",)
    assert layout.location == ("city", "latitude")
    assert layout.json == ()
    assert profile_layout(["location"], ("subscriptions",)).location[0] == "address1"
    assert profile_layout(["email"], ("subscriptions",)).json == ("subscriptions",)


def test_profile_params() -> None:
    assert profile_params(None, ()) == {"page[size]": "100", "sort": "joined_group_at"}
    params = profile_params(["email", "joined_group_at"], ("subscriptions",))
    assert params["fields[profile]"] == "email,subscriptions,joined_group_at"
    assert params["additional-fields[profile]"] == "subscriptions"


def test_memberships_table() -> None:
    table = memberships_table(
        [
            ("S1", _profile("P1"), datetime(2024, 1, 1, tzinfo=UTC)),
            ("S2", _profile("P1"), None),
        ]
    )
    assert table.to_pylist() == [
        {
            "segment_id": "S1",
            "profile_id": "P1",
            "joined_group_at": datetime(2024, 1, 1, tzinfo=UTC),
            "is_member": True,
            "left_at": None,
        },
        {
            "segment_id": "S2",
            "profile_id": "P1",
            "joined_group_at": None,
            "is_member": True,
            "left_at": None,
        },
    ]


def test_plan_walks_starts_each_segment_at_its_oldest_cursor() -> None:
    segments = [
        {"id": "A", "attributes": {"is_processing": False}},
        {"id": "B", "attributes": {"is_processing": False}},
        {"id": "C", "attributes": {"is_processing": True}},
    ]
    profiles_cursors = {"A": "2024-05-01T00:00:00+00:00", "B": "2024-02-01T00:00:00+00:00"}
    membership_cursors = {"A": "2024-04-01T00:00:00+00:00", "C": "2024-01-01T00:00:00+00:00"}
    start = datetime(2020, 1, 1, tzinfo=UTC)

    walks = {
        w.segment_id: w for w in plan_walks(segments, [profiles_cursors, membership_cursors], start)
    }

    assert walks["A"].since == datetime(2024, 4, 1, tzinfo=UTC)
    assert walks["B"].cursor is None and walks["B"].since == start  # one table lacks a cursor
    assert walks["C"].processing is True
    only_one_table = plan_walks(segments, [profiles_cursors], None)
    assert only_one_table[1].since == datetime(2024, 2, 1, tzinfo=UTC)


def test_redaction_and_error_lookup() -> None:
    key = "pk_" + "a1B2c3" * 5 + "d4E5"
    assert key not in redact(f"failed for {key}\nretry")
    assert "\n" not in redact("a\nb")
    assert redact("token sk-123", ["sk-123"]) == "token pk_***"
    error = KlaviyoAuthError(f"Klaviyo rejected the API key {key}")
    assert key not in str(error)
    try:
        try:
            raise error
        except KlaviyoAuthError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert find_klaviyo_error(outer) is error
    assert find_klaviyo_error(ValueError("x")) is None


def test_segment_tag_changes_delete_what_disappeared() -> None:
    known = {"A": ["t1", "t2"], "B": ["t1"], "C": ["t3"]}
    current = {"A": ["t2", "t4"], "B": []}

    rows = segment_tag_changes(known, current, gone=["C"])

    live = {(r["segment_id"], r["tag_id"]) for r in rows if not r["deleted"]}
    deleted = {(r["segment_id"], r["tag_id"]) for r in rows if r["deleted"]}
    assert live == {("A", "t2"), ("A", "t4")}
    assert deleted == {("A", "t1"), ("B", "t1"), ("C", "t3")}


def test_segment_without_linkage_is_not_taken_for_untagged() -> None:
    assert segment_tag_ids({"id": "A", "relationships": {"tags": {"links": {}}}}) is None
    assert segment_tag_ids({"id": "A", "relationships": {"tags": {"data": []}}}) == []


NOW = datetime(2026, 7, 20, 12, tzinfo=UTC)


def _segment(segment_id: str, active: bool = True, processing: bool = False) -> dict[str, object]:
    return {"id": segment_id, "attributes": {"is_active": active, "is_processing": processing}}


def test_reconcile_policy() -> None:
    policy = ReconcilePolicy(every_hours=24)
    active = _segment("A")
    assert policy.is_due(active, None, NOW)  # never reconciled
    assert not policy.is_due(active, NOW - timedelta(hours=20), NOW)
    # a daily job that starts a few minutes early still reconciles every day
    assert policy.is_due(active, NOW - timedelta(hours=23, minutes=50), NOW)
    assert not policy.is_due(_segment("I", active=False), None, NOW)
    assert not policy.is_due(_segment("P", processing=True), None, NOW)
    assert ReconcilePolicy(every_hours=0).is_due(active, NOW, NOW)

    forced = ReconcilePolicy.from_options(24, ["I", "P"], inactive=False)
    assert forced.is_due(_segment("I", active=False), NOW, NOW)
    assert not forced.is_due(_segment("P", processing=True), NOW, NOW)
    assert not forced.is_due(active, NOW, NOW)
    everything = ReconcilePolicy.from_options(24, ["all"], inactive=False)
    assert everything.is_due(active, NOW, NOW)
    assert not everything.is_due(_segment("I", active=False), NOW, NOW)
    assert ReconcilePolicy(24, inactive=True).is_due(_segment("I", active=False), None, NOW)


def _at(hour: int) -> datetime:
    return datetime(2026, 7, 1, hour, tzinfo=UTC)


def test_comparison_finds_leaves_rejoins_and_late_joiners() -> None:
    known = {
        "stays": (_at(1),),
        "leaves": (_at(2),),
        "rejoined": (_at(3),),
        "twice": (_at(1), _at(4)),  # re-joined between two reconciliations
        "gone twice": (_at(1), _at(5)),
    }
    comparison = MembershipComparison(known)
    comparison.listed(["stays", "rejoined", "twice", "late", "new"])
    comparison.walked("rejoined", _at(6))
    comparison.walked("new", _at(7))

    assert comparison.late_joiners == {"late"}
    closures = set(comparison.closures(NOW))
    assert closures == {
        Closure("leaves", _at(2), NOW, True),
        Closure("rejoined", _at(3), _at(6), False),
        Closure("twice", _at(1), _at(4), False),
        Closure("gone twice", _at(1), _at(5), False),
        Closure("gone twice", _at(5), NOW, True),
    }


def test_comparison_walked_member_is_not_a_leave() -> None:
    # joined after the id walk: the profile walk still sees it
    comparison = MembershipComparison({"P": (_at(1),)})
    comparison.listed([])
    comparison.walked("P", _at(1))
    assert list(comparison.closures(NOW)) == []
    assert comparison.late_joiners == set()


def test_profile_id_page_size_follows_the_revision() -> None:
    assert profile_ids_page_size("2024-06-15") == 1000
    assert profile_ids_page_size("2024-07-15.pre") == 1000
    assert profile_ids_page_size("2024-10-15") == 100
    assert profile_ids_page_size("2026-07-15") == 100


def test_plan_walks_reconciles_due_segments_and_full_walks() -> None:
    segments = [_segment("A"), _segment("B"), _segment("C"), _segment("P", processing=True)]
    cursors = {"A": "2024-05-01T00:00:00+00:00", "B": "2024-05-01T00:00:00+00:00"}
    reconciled = {"A": NOW.isoformat(), "B": (NOW - timedelta(days=2)).isoformat()}

    walks = {
        w.segment_id: w
        for w in plan_walks(segments, [cursors], None, [reconciled], ReconcilePolicy(), NOW)
    }

    assert not walks["A"].reconcile  # reconciled just now
    assert walks["B"].reconcile  # two days ago
    assert walks["C"].reconcile and walks["C"].cursor is None  # a first load reads everyone
    assert not walks["P"].reconcile
    assert not any(w.reconcile for w in plan_walks(segments, [cursors], None))


def test_plan_walks_catches_up_a_segment_klaviyo_finished_processing() -> None:
    cursors = {"P": "2024-05-01T00:00:00+00:00", "Q": "2024-05-01T00:00:00+00:00"}
    was = {"P": NOW.isoformat(), "Q": NOW.isoformat()}
    segments = [_segment("P"), _segment("Q", processing=True)]
    start = datetime(2020, 1, 1, tzinfo=UTC)

    walks = {
        w.segment_id: w
        for w in plan_walks(
            segments, [cursors], start, [cursors], ReconcilePolicy(), NOW, processing=[was]
        )
    }
    assert walks["P"].reconcile and walks["P"].since == parse_datetime(cursors["P"])
    assert not walks["Q"].reconcile and walks["Q"].processing
    assert walks["Q"].since == parse_datetime(cursors["Q"])  # its cursor advances meanwhile
    # nothing to compare ids with: the catch-up is a walk of every member
    unreconciled = plan_walks(segments, [cursors], start, now=NOW, processing=[was])
    assert [w.since for w in unreconciled] == [start, parse_datetime(cursors["Q"])]


def test_tombstone_repeats_the_last_row() -> None:
    row = {
        "id": "A",
        "name": "VIP",
        "definition": {"condition_groups": []},
        "created": datetime(2024, 1, 1, tzinfo=UTC),
        "updated": datetime(2024, 2, 1, tzinfo=UTC),
        "is_active": True,
        "is_processing": False,
        "is_starred": False,
        "deleted_at": None,
    }
    kept = segment_state_row(row)
    assert json.loads(json.dumps(kept)) == kept  # state holds JSON

    tombstone = segment_tombstone(kept, NOW)

    assert tombstone == {**row, "deleted_at": NOW}


def test_history_table_rows() -> None:
    table = history_table(
        [("S", _profile("P1"), datetime(2024, 1, 1, tzinfo=UTC)), ("S", _profile("P2"), None)],
        [
            ("S", Closure("P3", _at(1), _at(2), False)),
            ("S", Closure("P3", _at(2), NOW, True)),
        ],
    )
    assert table.to_pylist() == [
        {
            "segment_id": "S",
            "profile_id": "P1",
            "joined_group_at": datetime(2024, 1, 1, tzinfo=UTC),
            "left_at": None,
        },
        {"segment_id": "S", "profile_id": "P3", "joined_group_at": _at(1), "left_at": _at(2)},
        {"segment_id": "S", "profile_id": "P3", "joined_group_at": _at(2), "left_at": NOW},
    ]
    leaves = memberships_table([], [("S", Closure("P3", _at(2), NOW, True))]).to_pylist()
    assert leaves == [
        {
            "segment_id": "S",
            "profile_id": "P3",
            "joined_group_at": _at(2),
            "is_member": False,
            "left_at": NOW,
        }
    ]


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"reconcile_every_hours": -1}, "reconcile_every_hours must be a number of hours >= 0"),
        ({"reconcile_every_hours": "daily"}, "reconcile_every_hours must be"),
        ({"reconcile_inactive": "maybe"}, "reconcile_inactive must be true or false"),
    ],
)
def test_bad_reconcile_options(options: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {
        "api_key": "pk_" + "a" * 34,
        "base_url": "http://127.0.0.1:1",
        **options,
    }
    with pytest.raises(KlaviyoConfigError) as raised:
        klaviyo_source(**arguments)
    assert fragment in str(raised.value)


def test_reconcile_options_are_normalised() -> None:
    options = validate_options(
        "pk_" + "a" * 34,
        None,
        "2026-07-15",
        None,
        None,
        None,
        None,
        4,
        30,
        8,
        reconcile_every_hours="12.5",
        reconcile_segments="all, Y6nRLr",
        reconcile_inactive="true",
    )
    assert options.reconcile_every_hours == 12.5
    assert options.reconcile_segments == ("all", "Y6nRLr")
    assert options.reconcile_inactive is True


def _python_only(*_: object) -> None:
    raise pa.ArrowInvalid("forced")


@pytest.mark.parametrize(
    "profiles",
    [
        [
            _profile(
                "P1",
                email="a@example.com",
                created="2024-03-26T17:24:42.123+00:00",
                updated="2024-03-26T19:24:42+02:00",
                last_event_date=None,
                location={"city": "Boston", "latitude": "42.36", "longitude": -71.05},
                properties={"plan": "pro"},
            ),
            _profile("P2", location=None, created="2024-03-26T17:24:42Z"),
            _profile("P3"),
        ],
        [_profile("P1", created="2024-03-26", location={"zip": "02110"})],  # no offset
        [_profile("P1", created=" 2024-03-26T17:24:42Z", updated="")],
        [_profile("P1", email=7, location={"zip": 2110, "city": ["a"]})],  # not text
        # a location that is not an object: its columns are null, the rest loads
        [_profile("P1", location="nowhere"), _profile("P2", location={"city": "Boston"})],
        [_profile("P1", location=["Boston", "MA"]), _profile("P2", location={"zip": "02110"})],
        [_profile("P1", location=[["city", "Boston"]])],  # arrow would take pairs for fields
        [_profile("P1", location=42.5, email="a@example.com"), _profile("P2", location=True)],
        [_profile("P1", location=[]), _profile("P2", location="")],
    ],
)
def test_profiles_table_arrow_and_python_conversions_agree(
    profiles: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = profile_layout(None, ("subscriptions",))
    fast = profiles_table(profiles, layout)
    monkeypatch.setattr(profile_rows, "_arrow_columns", _python_only)
    slow = profiles_table(profiles, layout)
    assert fast.equals(slow, check_metadata=True)
    assert fast.to_pylist() == slow.to_pylist()
    for profile, row in zip(profiles, fast.to_pylist(), strict=True):
        location = profile["attributes"].get("location")  # type: ignore[attr-defined]
        if not isinstance(location, dict):
            assert [row[f"location_{name}"] for name in settings.LOCATION_FIELDS] == [None] * 10
