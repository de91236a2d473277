"""The filter grammar of API-NOTES §6: parsing, allowed pairs per endpoint, evaluation, HTTP 400s."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from klaviyo_emulator.responses.filters import (
    SYNTAX_DETAIL,
    Condition,
    FilterError,
    allowed_fields,
    check_allowed,
    joined_group_at_bounds,
    matches,
    parse_filter,
)
from klaviyo_emulator.spec.dates import parse_datetime

UTC = timezone.utc
JAN1 = datetime(2024, 1, 1, tzinfo=UTC)


def _detail(
    text: str, operation: str = "get_segment_profiles", revision: str = "2024-06-15"
) -> str:
    with pytest.raises(FilterError) as caught:
        check_allowed(parse_filter(text), operation, revision)
    return caught.value.detail


# --- datetimes (§6.2) ---


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-01T00:00:00Z", JAN1),
        ("2024-01-01T00:00:00z", JAN1),
        ("2024-01-01T00:00:00+00:00", JAN1),
        ("2024-01-01T02:00:00+02:00", JAN1),
        ("2023-12-31T19:00:00-05:00", JAN1),
        ("2024-01-01T05:30:00+0530", JAN1),
        ("2024-01-01T00:00:00", JAN1),
        ("2024-01-01 00:00:00Z", JAN1),
        ("2024-01-01 00:00:00", JAN1),
        ("2024-01-01T00:00Z", JAN1),
        ("2024-01-01", JAN1),
        ("2024-01-01T00:00:00.710Z", JAN1 + timedelta(microseconds=710000)),
        ("2024-01-01T00:00:00.52Z", JAN1 + timedelta(microseconds=520000)),
        ("2024-01-01T00:00:00.123456789Z", JAN1 + timedelta(microseconds=123456)),
    ],
)
def test_parse_datetime_accepts_klaviyo_forms(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01T00:00:00Z",
        "2024-02-30",
        "2024-01-01T25:00:00Z",
        "2024-01-01T00:00:00+25:00",
        "2024-01-01T00:00:00 00:00",  # an unencoded '+' that became a space
        "2024/01/01",
        "20240101",
        "yesterday",
        "",
    ],
)
def test_parse_datetime_rejects_other_forms(text: str) -> None:
    assert parse_datetime(text) is None


# --- grammar (§6.1) ---


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "greater-or-equal(joined_group_at,2024-01-01T00:00:00Z)",
            [Condition("greater-or-equal", "joined_group_at", JAN1)],
        ),
        ('equals(email,"sarah@example.com")', [Condition("equals", "email", "sarah@example.com")]),
        ("equals(email,'sarah@example.com')", [Condition("equals", "email", "sarah@example.com")]),
        ("any(email,['a@x.io','b@x.io'])", [Condition("any", "email", ["a@x.io", "b@x.io"])]),
        ("any(email,[\"a@x.io\", 'b@x.io'])", [Condition("any", "email", ["a@x.io", "b@x.io"])]),
        ("equals(is_active,true)", [Condition("equals", "is_active", True)]),
        ("equals(is_starred,false)", [Condition("equals", "is_starred", False)]),
        ("equals(name,null)", [Condition("equals", "name", None)]),
        ("less-than(value,25)", [Condition("less-than", "value", 25)]),
        (
            "greater-or-equal(percentage,33.33)",
            [Condition("greater-or-equal", "percentage", 33.33)],
        ),
        ("less-than(delta,-2)", [Condition("less-than", "delta", -2)]),
        ("has(email)", [Condition("has", "email", None)]),
        ("equals(name,'it\\'s')", [Condition("equals", "name", "it's")]),
        ('equals(name,"say \\"hi\\"")', [Condition("equals", "name", 'say "hi"')]),
        ('equals(name,"a,b)c(d]")', [Condition("equals", "name", "a,b)c(d]")]),
        ('equals(name,"it\'s")', [Condition("equals", "name", "it's")]),
        ("equals(name,'')", [Condition("equals", "name", "")]),
        ("equals(name,'Ünïcødé ✓')", [Condition("equals", "name", "Ünïcødé ✓")]),
        (
            "greater-than(joined_group_at,2024-01-01 00:00:00Z)",
            [Condition("greater-than", "joined_group_at", JAN1)],
        ),
        (
            "greater-or-equal(joined_group_at,2024-01-01T00:00:00Z),"
            "less-than(joined_group_at,2024-02-01T00:00:00Z)",
            [
                Condition("greater-or-equal", "joined_group_at", JAN1),
                Condition("less-than", "joined_group_at", datetime(2024, 2, 1, tzinfo=UTC)),
            ],
        ),
        (
            "and(equals(is_active,true),greater-than(updated,2024-01-01T00:00:00Z))",
            [Condition("equals", "is_active", True), Condition("greater-than", "updated", JAN1)],
        ),
        (
            "and(and(equals(a,1),equals(b,2)),equals(c,3)),equals(d,4)",
            [
                Condition("equals", "a", 1),
                Condition("equals", "b", 2),
                Condition("equals", "c", 3),
                Condition("equals", "d", 4),
            ],
        ),
        (
            "equals(profile_id, '01ABC'), any(email, ['x@y.z'])",
            [Condition("equals", "profile_id", "01ABC"), Condition("any", "email", ["x@y.z"])],
        ),
    ],
)
def test_parse_filter_valid(text: str, expected: list[Condition]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "equals(email,'a@b.c'",
        "equals(email,'a@b.c'))",
        "equals email,'a@b.c')",
        "equals(email 'a@b.c')",
        "equals(email,'a@b.c)",
        'equals(email,"a@b.c)',
        "equals(email,me@test.com)",  # unquoted string [I-RB3]
        "equals(name,VIP customers)",
        "equals(email,)",
        "equals(,'x')",
        "equals()",
        "equals(email,'a'),",
        ",equals(email,'a')",
        "equals(email,'a');equals(email,'b')",
        "equals(email,'a') equals(email,'b')",
        "or(equals(email,'a'),equals(email,'b'))",
        "not(equals(email,'a'))",
        "and(equals(email,'a'))",
        "and()",
        "frobnicate(email,'a')",
        "EQUALS(email,'a')",
        "any(email,[])",
        "any(email,['a',])",
        "any(email,[['a']])",
        "any(email,['a'",
        "has(email,'a')",
        "equals(email,'a','b')",
        "greater-than(joined_group_at,2024-01-01T00:00:00 00:00)",
        "greater-than(joined_group_at,now)",
    ],
)
def test_parse_filter_syntax_errors(text: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert caught.value.detail == SYNTAX_DETAIL


def test_parse_filter_is_cached_and_returns_fresh_lists() -> None:
    text = "greater-than(joined_group_at,2024-05-05T05:05:05Z)"
    first, second = parse_filter(text), parse_filter(text)
    assert first == second and first is not second
    for _ in range(2):  # a cached failure raises every time
        with pytest.raises(FilterError):
            parse_filter("equals(email,")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_quoted_strings_round_trip(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    assert parse_filter(f'equals(email,"{escaped}")') == [Condition("equals", "email", value)]


# --- allowed fields and operators (§6.3, §6.4) ---


@pytest.mark.parametrize(
    "operation, text",
    [
        ("get_segments", "any(name,['VIP','Churn risk'])"),
        ("get_segments", "equals(name,'VIP')"),
        ("get_segments", "any(id,['Y6nRLr'])"),
        ("get_segments", "equals(id,'Y6nRLr')"),
        ("get_segments", "greater-than(created,2024-01-01T00:00:00Z)"),
        ("get_segments", "greater-than(updated,2024-01-01T00:00:00Z)"),
        ("get_segments", "equals(is_active,true)"),
        ("get_segments", "any(is_active,[true,false])"),
        ("get_segments", "equals(is_starred,false)"),
        ("get_segments", "and(equals(is_active,true),greater-than(updated,2024-01-01))"),
        ("get_segment_profiles", "any(email,['a@b.co'])"),
        ("get_segment_profiles", "equals(email,'a@b.co')"),
        ("get_segment_profiles", "equals(phone_number,'+15005550006')"),
        ("get_segment_profiles", "any(push_token,['tok'])"),
        ("get_segment_profiles", "equals(_kx,'abc')"),
        ("get_segment_profiles", "greater-or-equal(joined_group_at,2024-01-01T00:00:00Z)"),
        ("get_segment_profiles", "greater-than(joined_group_at,2024-01-01T00:00:00Z)"),
        ("get_segment_profiles", "less-or-equal(joined_group_at,2024-01-01T00:00:00Z)"),
        ("get_segment_profiles", "less-than(joined_group_at,2024-01-01T00:00:00Z)"),
        (
            "get_segment_relationships_profiles",
            "greater-or-equal(joined_group_at,2024-01-01T00:00:00Z),"
            "less-than(joined_group_at,2025-01-01T00:00:00Z)",
        ),
        ("get_profiles_for_segment", "greater-than(joined_group_at,2024-01-01T00:00:00Z)"),
        ("get_profile_ids_for_segment", "any(email,['a@b.co'])"),
    ],
)
def test_allowed_pairs_pass(operation: str, text: str) -> None:
    check_allowed(parse_filter(text), operation, "2024-06-15")


@pytest.mark.parametrize(
    "operation, text, detail",
    [
        (
            "get_segment_profiles",
            "any(joined_group_at,[2024-01-01T00:00:00Z])",
            "'any' is not an allowed operator for 'joined_group_at'. Allowed operators are "
            "greater-or-equal, greater-than, less-or-equal, less-than.",
        ),
        (
            "get_segment_profiles",
            "equals(joined_group_at,2024-01-01T00:00:00Z)",
            "'equals' is not an allowed operator for 'joined_group_at'. Allowed operators are "
            "greater-or-equal, greater-than, less-or-equal, less-than.",
        ),
        (
            "get_segment_profiles",
            "any(_kx,['abc'])",
            "'any' is not an allowed operator for '_kx'. Allowed operators are equals.",
        ),
        (
            "get_segment_profiles",
            "contains(email,'@example.com')",
            "'contains' is not an allowed operator for 'email'. Allowed operators are any, equals.",
        ),
        (
            "get_segments",
            "greater-or-equal(updated,2024-01-01T00:00:00Z)",
            "'greater-or-equal' is not an allowed operator for 'updated'. "
            "Allowed operators are greater-than.",
        ),
        (
            "get_segments",
            "any(is_starred,[true])",
            "'any' is not an allowed operator for 'is_starred'. Allowed operators are equals.",
        ),
        (
            "get_segments",
            "starts-with(name,'VIP')",
            "'starts-with' is not an allowed operator for 'name'. Allowed operators are any, equals.",
        ),
    ],
)
def test_disallowed_operator_detail(operation: str, text: str, detail: str) -> None:
    assert _detail(text, operation) == detail


@pytest.mark.parametrize(
    "operation, text, field",
    [
        ("get_segment_profiles", "equals(first_name,'Sarah')", "first_name"),
        ("get_segment_profiles", "greater-than(updated,2024-01-01T00:00:00Z)", "updated"),
        ("get_segment_profiles", "equals(profile_id,'01HZX8A6R0J3VQ2N9P4K7T5M1B')", "profile_id"),
        ("get_segment_relationships_profiles", "any(profile_id,['01HZX8'])", "profile_id"),
        ("get_segments", "greater-than(joined_group_at,2024-01-01T00:00:00Z)", "joined_group_at"),
        ("get_segments", "equals(is_processing,true)", "is_processing"),
        ("get_segments", "has(name)", "name"),
    ],
)
def test_field_not_filterable(operation: str, text: str, field: str) -> None:
    detail = _detail(text, operation)
    if field == "name":  # `has` on a filterable field is an operator problem
        assert detail.startswith("'has' is not an allowed operator for 'name'")
    else:
        assert detail.startswith(f"'{field}' is not an allowed filter field for this resource.")


@pytest.mark.parametrize(
    "revision, allowed",
    [
        ("2024-06-15", False),
        ("2025-07-15", False),
        ("2025-10-15", True),
        ("2025-10-15.pre", True),
        ("2026-07-15", True),
    ],
)
@pytest.mark.parametrize(
    "operation", ["get_segment_profiles", "get_segment_relationships_profiles"]
)
def test_profile_id_filter_from_2025_10_15(operation: str, revision: str, allowed: bool) -> None:
    for text in ("equals(profile_id,'01ABC')", "any(profile_id,['01ABC','01ABD'])"):
        conditions = parse_filter(text)
        if allowed:
            check_allowed(conditions, operation, revision)
        else:
            with pytest.raises(FilterError):
                check_allowed(conditions, operation, revision)
    assert ("profile_id" in allowed_fields(operation, revision)) is allowed


@pytest.mark.parametrize(
    "operation, text",
    [
        ("get_segment_profiles", "greater-than(joined_group_at,'2024-01-01T00:00:00Z')"),
        ("get_segment_profiles", 'greater-than(joined_group_at,"2024-01-01T00:00:00Z")'),
        ("get_segments", "greater-than(updated,'2024-01-01T00:00:00Z')"),
        ("get_segments", 'greater-than(created,"2024-01-01")'),
    ],
)
def test_quoted_datetime_is_invalid(operation: str, text: str) -> None:
    assert _detail(text, operation).startswith("Invalid filter provided.")


@pytest.mark.parametrize(
    "operation, text",
    [
        ("get_segment_profiles", "any(email,'a@b.co')"),  # `any` takes a list
        ("get_segment_profiles", "equals(email,42)"),
        ("get_segment_profiles", "equals(email,true)"),
        ("get_segment_profiles", "any(email,['a@b.co',3])"),
        ("get_segment_profiles", "greater-than(joined_group_at,1704067200)"),
        ("get_segment_profiles", "greater-than(joined_group_at,null)"),
        ("get_segments", "equals(is_active,'true')"),
        ("get_segments", "equals(is_active,1)"),
        ("get_segments", "equals(name,2024-01-01)"),
    ],
)
def test_wrong_value_type_is_invalid(operation: str, text: str) -> None:
    assert _detail(text, operation).startswith("Invalid filter provided.")


@pytest.mark.parametrize(
    "operation", ["get_segment", "get_segment_tags", "get_segment_relationships_tags"]
)
def test_operations_without_filter(operation: str) -> None:
    assert allowed_fields(operation, "2026-07-15") == {}
    with pytest.raises(FilterError):
        check_allowed(parse_filter("equals(name,'x')"), operation, "2026-07-15")


# --- evaluation ---

RECORD: dict[str, Any] = {
    "email": "sarah@example.com",
    "phone_number": None,
    "name": "VIP",
    "is_active": True,
    "is_starred": False,
    "joined_group_at": JAN1,
    "updated": "2024-03-01T00:00:00+00:00",
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("equals(email,'sarah@example.com')", True),
        ("equals(email,'Sarah@example.com')", False),  # case-sensitive
        ("any(email,['x@y.z','sarah@example.com'])", True),
        ("any(email,['x@y.z'])", False),
        ("equals(email,['sarah@example.com'])", True),
        ("equals(phone_number,'+15005550006')", False),
        ("equals(phone_number,null)", True),
        ("equals(push_token,'t')", False),  # missing field
        ("equals(is_active,true)", True),
        ("equals(is_starred,true)", False),
        ("any(is_active,[false])", False),
        ("greater-or-equal(joined_group_at,2024-01-01T00:00:00Z)", True),
        ("greater-than(joined_group_at,2024-01-01T00:00:00Z)", False),
        ("less-or-equal(joined_group_at,2024-01-01T00:00:00Z)", True),
        ("less-than(joined_group_at,2024-01-01T00:00:00Z)", False),
        ("greater-than(joined_group_at,2023-12-31T23:59:59.999999Z)", True),
        ("less-than(joined_group_at,2024-01-01T00:00:00.000001Z)", True),
        ("greater-or-equal(joined_group_at,2024-01-01T01:00:00+01:00)", True),
        ("greater-than(joined_group_at,2023-12-31T23:00:00-01:00)", False),
        ("greater-than(updated,2024-02-29T23:59:59Z)", True),  # ISO string in the record
        ("greater-than(updated,2024-03-01T00:00:00Z)", False),
        ("greater-than(push_token,2024-01-01)", False),
        ("has(email)", True),
        ("has(phone_number)", False),
        ("starts-with(name,'VI')", True),
        ("ends-with(name,'IP')", True),
        ("contains(name,'I')", True),
        ("contains(name,'x')", False),
        ("equals(is_active,true),equals(name,'VIP')", True),
        ("equals(is_active,true),equals(name,'Other')", False),
        ("and(equals(is_active,true),any(name,['VIP']))", True),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert matches(parse_filter(text), RECORD) is expected


def test_matches_nothing_is_everything() -> None:
    assert matches([], RECORD) is True


OPERATORS = ["greater-or-equal", "greater-than", "less-or-equal", "less-than"]
moments = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@given(
    joined=moments,
    bound=moments,
    operator=st.sampled_from(OPERATORS),
)
def test_matches_agrees_with_python_comparisons(
    joined: datetime, bound: datetime, operator: str
) -> None:
    text = f"{operator}(joined_group_at,{bound.strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"
    expected = {
        "greater-or-equal": joined >= bound,
        "greater-than": joined > bound,
        "less-or-equal": joined <= bound,
        "less-than": joined < bound,
    }[operator]
    assert matches(parse_filter(text), {"joined_group_at": joined}) is expected


# --- range bounds used by the emulator's scans ---


def _bounds(text: str) -> tuple[datetime | None, bool, datetime | None, bool]:
    return joined_group_at_bounds(parse_filter(text))


def test_bounds_none_without_joined_group_at() -> None:
    assert _bounds("equals(email,'a@b.co')") == (None, True, None, True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("greater-or-equal(joined_group_at,2024-01-01)", (JAN1, True, None, True)),
        ("greater-than(joined_group_at,2024-01-01)", (JAN1, False, None, True)),
        ("less-or-equal(joined_group_at,2024-01-01)", (None, True, JAN1, True)),
        ("less-than(joined_group_at,2024-01-01)", (None, True, JAN1, False)),
        (
            "greater-or-equal(joined_group_at,2024-01-01),greater-than(joined_group_at,2024-01-01)",
            (JAN1, False, None, True),
        ),
        (
            "greater-than(joined_group_at,2024-01-01),greater-or-equal(joined_group_at,2024-01-01)",
            (JAN1, False, None, True),
        ),
        (
            "greater-than(joined_group_at,2023-01-01),greater-or-equal(joined_group_at,2024-01-01)",
            (JAN1, True, None, True),
        ),
        (
            "less-than(joined_group_at,2025-01-01),less-or-equal(joined_group_at,2024-01-01)",
            (None, True, JAN1, True),
        ),
        (
            "and(greater-or-equal(joined_group_at,2023-01-01),less-than(joined_group_at,2024-01-01))",
            (datetime(2023, 1, 1, tzinfo=UTC), True, JAN1, False),
        ),
    ],
)
def test_bounds_take_the_tightest(text: str, expected: tuple[Any, ...]) -> None:
    assert _bounds(text) == expected


@given(
    lows=st.lists(st.tuples(moments, st.booleans()), max_size=3),
    highs=st.lists(st.tuples(moments, st.booleans()), max_size=3),
    joined=moments,
)
def test_bounds_agree_with_matches(
    lows: list[tuple[datetime, bool]], highs: list[tuple[datetime, bool]], joined: datetime
) -> None:
    conditions = [
        Condition("greater-or-equal" if inclusive else "greater-than", "joined_group_at", moment)
        for moment, inclusive in lows
    ] + [
        Condition("less-or-equal" if inclusive else "less-than", "joined_group_at", moment)
        for moment, inclusive in highs
    ]
    lower, lower_inclusive, upper, upper_inclusive = joined_group_at_bounds(conditions)
    in_range = (lower is None or joined > lower or (lower_inclusive and joined == lower)) and (
        upper is None or joined < upper or (upper_inclusive and joined == upper)
    )
    assert in_range is matches(conditions, {"joined_group_at": joined})


# --- over HTTP ---

FILTER_ERRORS = [
    ("equals(email,me@test.com)", SYNTAX_DETAIL),
    ("greater-than(joined_group_at,2024-01-01T00:00:00Z", SYNTAX_DETAIL),
    ("greater-than(joined_group_at,'2024-01-01T00:00:00Z')", "Invalid filter provided."),
    ("any(joined_group_at,[2024-01-01T00:00:00Z])", "'any' is not an allowed operator for"),
    ("equals(first_name,'Sarah')", "'first_name' is not an allowed filter field"),
]


def _get(emu: Any, path: str, params: dict[str, str], revision: str = "2024-06-15") -> Any:
    return requests.get(
        f"{emu.base_url}{path}",
        params=params,
        headers={
            "Authorization": f"Klaviyo-API-Key {emu.api_key}",
            "revision": revision,
            "accept": "application/vnd.api+json",
        },
        timeout=10,
    )


def _largest_segment(emu: Any) -> str:
    return max(emu.segment_ids(), key=lambda segment_id: len(emu.members(segment_id)))


@pytest.mark.parametrize("text, detail", FILTER_ERRORS)
@pytest.mark.parametrize("endpoint", ["profiles", "relationships/profiles"])
def test_http_invalid_filter_is_400(emu: Any, endpoint: str, text: str, detail: str) -> None:
    response = _get(emu, f"/api/segments/{_largest_segment(emu)}/{endpoint}/", {"filter": text})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["status"] == 400
    assert error["code"] == "invalid"
    assert error["title"] == "Invalid input."
    assert error["detail"].startswith(detail)
    assert error["source"] == {"parameter": "filter"}


def test_http_joined_group_at_filter_selects_members(emu: Any) -> None:
    segment_id = _largest_segment(emu)
    members = emu.members(segment_id)
    pivot = sorted(members.values())[len(members) // 2]
    stamp = pivot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pivot = parse_datetime(stamp)  # the bound as sent, whatever precision the data has
    assert pivot is not None
    for operator, keep in [
        ("greater-or-equal", lambda moment: moment >= pivot),
        ("less-than", lambda moment: moment < pivot),
    ]:
        response = _get(
            emu,
            f"/api/segments/{segment_id}/profiles/",
            {"filter": f"{operator}(joined_group_at,{stamp})", "page[size]": "100"},
        )
        assert response.status_code == 200
        got = {row["id"] for row in response.json()["data"]}
        assert got == {pid for pid, moment in members.items() if keep(moment)}


def test_http_profile_id_filter_by_revision(emu: Any) -> None:
    segment_id = _largest_segment(emu)
    wanted = sorted(emu.members(segment_id))[:2]
    params = {"filter": f"any(profile_id,['{wanted[0]}','{wanted[1]}'])"}
    old = _get(emu, f"/api/segments/{segment_id}/relationships/profiles/", params)
    assert old.status_code == 400
    assert old.json()["errors"][0]["source"] == {"parameter": "filter"}
    new = _get(emu, f"/api/segments/{segment_id}/relationships/profiles", params, "2026-07-15")
    assert new.status_code == 200
    assert sorted(row["id"] for row in new.json()["data"]) == wanted


def test_http_segments_filter(emu: Any) -> None:
    response = _get(emu, "/api/segments/", {"filter": "equals(is_active,false)"})
    assert response.status_code == 200
    inactive = {sid for sid in emu.segment_ids() if not emu.segment(sid)["is_active"]}
    assert {row["id"] for row in response.json()["data"]} == inactive
    quoted = _get(emu, "/api/segments/", {"filter": "greater-than(updated,'2024-01-01')"})
    assert quoted.status_code == 400


def test_http_offset_needs_an_encoded_plus(emu: Any) -> None:
    url = f"{emu.base_url}/api/segments/{_largest_segment(emu)}/profiles/"
    headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": "2024-06-15"}
    encoded = requests.get(
        url + "?filter=greater-than(joined_group_at,2000-01-01T00:00:00%2B00:00)",
        headers=headers,
        timeout=10,
    )
    assert encoded.status_code == 200
    # a raw '+' reaches the server as a space (API-NOTES §6.2), which is no datetime
    raw = requests.get(
        url + "?filter=greater-than(joined_group_at,2000-01-01T00:00:00+00:00)",
        headers=headers,
        timeout=10,
    )
    assert raw.status_code == 400
    assert raw.json()["errors"][0]["source"] == {"parameter": "filter"}
