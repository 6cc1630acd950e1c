"""The read model's shape (booking_core.domain.read_model) and the Read API's parameter rules, without Redis."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from booking_core.domain import queries
from booking_core.domain import read_model as rm
from booking_core.domain.model import ValidationError

LISTING = {"id": 7, "host_id": 2, "title": "Loft", "city": "Lisbon", "max_guests": 4,
           "nightly_price_cents": 9000, "currency": "EUR", "active": 1,
           "created_at": dt.datetime(2026, 1, 2, 3, 4, 5), "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6)}


def test_a_row_round_trips_through_its_hash_with_ints_as_ints_and_active_as_a_bool():
    stored = rm.encode_row("listings", LISTING)
    assert all(isinstance(v, str) for v in stored.values())
    decoded = rm.decode_row("listings", stored)
    assert decoded["id"] == 7 and decoded["max_guests"] == 4 and decoded["nightly_price_cents"] == 9000
    assert decoded["active"] is True
    assert decoded["updated_at"] == "2026-01-02T03:04:05.000006"


def test_a_null_column_is_left_out_of_the_hash_and_read_back_as_none():
    payment = {"id": 1, "booking_id": 2, "booking_key": "k", "user_id": 3, "amount_cents": 10, "currency": "EUR",
               "provider": "sandbox", "provider_ref": None, "status": "declined"}
    stored = rm.encode_row("payments", payment)
    assert "provider_ref" not in stored
    assert rm.decode_row("payments", stored)["provider_ref"] is None


def test_an_active_listing_is_in_the_price_city_and_capacity_indexes_and_an_inactive_one_in_none():
    stored = rm.encode_row("listings", LISTING)
    member = rm.listing_member(7)
    assert rm.memberships("listings", stored) == {("listings:by_price", member): 9000.0,
                                                  ("listings:city:lisbon", member): 9000.0,
                                                  ("listings:guests:4", member): 9000.0,
                                                  ("listings:city_guests:4:lisbon", member): 9000.0}
    assert rm.memberships("listings", stored | {"active": "0"}) == {}


def test_a_listing_taking_more_guests_than_the_buckets_sits_in_the_top_bucket():
    stored = rm.encode_row("listings", LISTING | {"max_guests": rm.GUEST_BUCKETS + 30})
    assert ("listings:guests:16", rm.listing_member(7)) in rm.memberships("listings", stored)
    assert rm.search_indexes(None, rm.GUEST_BUCKETS + 30) == ["listings:guests:16"]


def test_a_search_walks_one_index_or_the_capacity_buckets_that_can_take_the_guests():
    assert rm.search_indexes(None, None) == ["listings:by_price"]
    assert rm.search_indexes(" Lisbon ", None) == ["listings:city:lisbon"]
    assert rm.search_indexes(None, 14) == ["listings:guests:14", "listings:guests:15", "listings:guests:16"]
    assert rm.search_indexes("Porto", 16) == ["listings:city_guests:16:porto"]


def test_a_city_name_cannot_forge_a_capacity_index_key():
    assert rm.guests_index(3, "x") != rm.city_index("x:guests:3")
    assert rm.city_index("x") != rm.guests_index(3, "x")


def test_changing_a_listings_capacity_moves_it_between_buckets():
    old = rm.encode_row("listings", LISTING)
    new = rm.encode_row("listings", LISTING | {"max_guests": 6})
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, old, new)
    assert ("zrem", "listings:guests:4", rm.listing_member(7)) in plan.ops
    assert ("zrem", "listings:city_guests:4:lisbon", rm.listing_member(7)) in plan.ops
    assert ("zadd", "listings:city_guests:6:lisbon", rm.listing_member(7), 9000.0) in plan.ops


def test_a_listing_is_written_with_its_public_json_made_of_the_same_row_and_rewritten_when_the_row_changes():
    """The search answers the stored JSON as it is: it must be the API's JSON of exactly the row beside it. It is
    a string key of its own, so the hash holds the row alone (small enough for Redis's listpack encoding)."""
    old = rm.encode_row("listings", LISTING)
    new = rm.encode_row("listings", LISTING | {"title": 'Loft "Sol" \\ / Łódź'})
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, old, new)
    [written] = [op[2] for op in plan.ops if op[:2] == ("hset", "listing:7")]
    assert written == new
    [text] = [op[2] for op in plan.ops if op[:2] == ("set", "listing:7:json")]
    assert json.loads(text) == rm.decode_row("listings", new)
    model = rm.full_model({"listings": [LISTING]}, [])
    assert model["listing:7"][1] == old
    assert model["listing:7:json"][0] == rm.STRING
    assert json.loads(model["listing:7:json"][1]) == rm.decode_row("listings", old)


def test_a_deleted_listing_takes_its_json_key_with_it_and_a_hash_still_carrying_the_old_field_is_rewritten():
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, rm.encode_row("listings", LISTING), None)
    assert ("delete", "listing:7") in plan.ops and ("delete", "listing:7:json") in plan.ops
    before = rm.encode_row("listings", LISTING) | {rm.JSON_FIELD: "{}"}  # as issue 18's first version wrote it
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, before, rm.encode_row("listings", LISTING))
    assert plan.ops[:2] == [("delete", "listing:7"), ("hset", "listing:7", rm.encode_row("listings", LISTING))]


def test_only_listings_have_a_json_key_and_a_damaged_hash_gets_none():
    assert rm.stored_json("users", {"id": "1", "email": "a@b", "name": "A"}) is None
    assert rm.stored_json("listings", {"id": "x7"}) is None  # not an int: no JSON, and no failure
    assert rm.stored_json("listings", None) is None
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, None, {"id": "x7"})
    assert ("delete", "listing:7:json") in plan.ops
    assert rm.is_model_key("listing:7:json") and rm.is_json_key("listing:7:json") and not rm.is_json_key("x:7:json")
    assert not rm.is_row_key("listing:7:json") and not rm.is_index_key("listing:7:json")


def test_listing_members_sort_by_id_numerically_within_one_price():
    assert sorted([rm.listing_member(10), rm.listing_member(9)]) == [rm.listing_member(9), rm.listing_member(10)]


def test_changing_a_listings_city_moves_it_between_city_indexes():
    old = rm.encode_row("listings", LISTING)
    new = rm.encode_row("listings", LISTING | {"city": "Porto"})
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, old, new)
    assert ("zrem", "listings:city:lisbon", rm.listing_member(7)) in plan.ops
    assert ("zadd", "listings:city:porto", rm.listing_member(7), 9000.0) in plan.ops
    assert ("hset", "listing:7", new) in plan.ops


def test_a_deleted_row_removes_its_hash_and_every_membership():
    plan = rm.Plan()
    rm.plan_row(plan, "listings", 7, rm.encode_row("listings", LISTING), None)
    assert plan.ops[0] == ("delete", "listing:7")
    assert {op[1] for op in plan.ops if op[0] == "zrem"} == {"listings:by_price", "listings:city:lisbon",
                                                             "listings:guests:4", "listings:city_guests:4:lisbon"}
    assert not [op for op in plan.ops if op[0] in ("zadd", "hset")]


def test_overlapping_bookings_give_each_night_to_the_lowest_id_whatever_the_order():
    a = (5, dt.date(2030, 1, 1), dt.date(2030, 1, 4))
    b = (3, dt.date(2030, 1, 3), dt.date(2030, 1, 5))
    expected = {"2030-01-01": "5", "2030-01-02": "5", "2030-01-03": "3", "2030-01-04": "3"}
    assert rm.occupied_nights([a, b]) == rm.occupied_nights([b, a]) == expected


def test_plan_nights_frees_nights_of_the_range_no_booking_occupies():
    plan = rm.Plan()
    rm.plan_nights(plan, 7, dt.date(2030, 1, 1), dt.date(2030, 1, 4), [(9, dt.date(2030, 1, 2), dt.date(2030, 1, 3))])
    assert plan.ops == [("hset", "listing:7:nights", {"2030-01-02": "9"}),
                        ("hdel", "listing:7:nights", ["2030-01-01", "2030-01-03"])]


def test_the_decision_store_keys_are_not_part_of_the_model():
    assert not rm.is_model_key("req:abc") and not rm.is_model_key("wake:abc")
    assert not rm.is_model_key(rm.LOADED_MARKER)
    assert rm.is_model_key("listing:1") and rm.is_model_key("listing:1:nights")
    assert rm.is_model_key("listings:city:rio de janeiro") and rm.is_model_key("user:3:payments")


def test_repair_counts_a_missing_a_stale_and_an_orphan_record_and_member():
    wanted = rm.full_model({"listings": [LISTING], "users": [{"id": 1, "email": "a@b", "name": "A"}]}, [])
    actual = {k: (t, v if t == rm.STRING else dict(v)) for k, (t, v) in wanted.items()}
    del actual["user:1"]  # missing record
    actual["listing:7"][1]["title"] = "wrong"  # stale record
    actual["booking:99"] = (rm.HASH, {"id": "99"})  # orphan row hash
    actual["listings:by_price"][1]["00000000000000000042"] = 1.0  # orphan member
    actual["listings:city:lisbon"][1][rm.listing_member(7)] = 1.0  # stale member
    actual["listing:7:nights"] = (rm.HASH, {"2030-01-01": "3"})  # orphan member in an orphan key
    plan, report = rm.plan_repair(wanted, actual)
    assert report.to_dict() == {"rows": {"missing": 1, "stale": 1, "orphan": 1},
                                "members": {"missing": 0, "stale": 1, "orphan": 2}, "repaired": 6}
    plan2, report2 = rm.plan_repair(wanted, wanted)
    assert report2.total == 0 and plan2.ops == []


def test_search_parameters_are_parsed_with_their_defaults():
    search = queries.parse_listing_search({"city": " Lisbon ", "guests": "2", "check_in": "2030-03-01",
                                         "check_out": "2030-03-04"})
    assert search.city == "Lisbon" and search.guests == 2 and search.limit == queries.DEFAULT_LIMIT
    assert search.stay == (dt.date(2030, 3, 1), dt.date(2030, 3, 4)) and search.after is None


@pytest.mark.parametrize("params, field", [
    ({"guests": "-1"}, "guests"),
    ({"guests": "two"}, "guests"),
    ({"max_price_cents": "-5"}, "max_price_cents"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"check_in": "2030-03-01"}, "check_out"),
    ({"check_in": "2030-03-04", "check_out": "2030-03-01"}, "check_out"),
    ({"check_in": "2030-02-30", "check_out": "2030-03-04"}, "check_in"),
    ({"check_in": "20300301", "check_out": "2030-03-04"}, "check_in"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"city": ""}, "city"),
])
def test_a_bad_search_parameter_is_named_in_the_error(params, field):
    with pytest.raises(ValidationError) as caught:
        queries.parse_listing_search(params)
    assert field in caught.value.errors


def test_a_path_id_must_be_a_positive_integer():
    assert queries.positive_id("12", "listing_id") == 12
    for bad in ("0", "-3", "abc", "1e3", " 4"):
        with pytest.raises(ValidationError) as caught:
            queries.positive_id(bad, "listing_id")
        assert "listing_id" in caught.value.errors


def test_writes_to_one_key_merge_into_one_command_without_reordering_that_keys_writes():
    from booking_core.adapters.redis_read_model import coalesce

    ops = [("zadd", "a", "1", 1.0), ("delete", "h"), ("zadd", "b", "1", 1.0), ("zadd", "a", "2", 2.0),
           ("hset", "h", {"x": "1"}), ("zrem", "a", "1"), ("zadd", "a", "1", 3.0), ("hset", "h", {"y": "2"}),
           ("hdel", "n", ["d1"]), ("hdel", "n", ["d2"])]
    assert coalesce(ops) == [("zadd", "a", {"1": 1.0, "2": 2.0}), ("delete", "h", None), ("zadd", "b", {"1": 1.0}),
                             ("hset", "h", {"x": "1", "y": "2"}), ("zrem", "a", ["1"]), ("zadd", "a", {"1": 3.0}),
                             ("hdel", "n", ["d1", "d2"])]


def test_a_row_is_rewritten_with_one_hset_unless_a_field_went_null():
    payment = {"id": 1, "booking_id": 2, "booking_key": "k", "user_id": 3, "amount_cents": 10, "currency": "EUR",
               "provider": "sandbox", "provider_ref": "ch_1", "status": "captured"}
    old, new = rm.encode_row("payments", payment), rm.encode_row("payments", payment | {"status": "refunded"})
    plan = rm.Plan()
    rm.plan_row(plan, "payments", 1, old, new)
    assert [op[0] for op in plan.ops if op[1] == "payment:1"] == ["hset"]
    plan = rm.Plan()
    rm.plan_row(plan, "payments", 1, old, rm.encode_row("payments", payment | {"provider_ref": None}))
    assert [op[0] for op in plan.ops if op[1] == "payment:1"] == ["delete", "hset"]  # provider_ref must go


def test_nights_of_several_stays_of_a_listing_are_one_hset_and_one_hdel_equal_to_one_plan_per_stay():
    spans = [(dt.date(2030, 1, 1), dt.date(2030, 1, 4)), (dt.date(2030, 3, 1), dt.date(2030, 3, 3))]
    occupying = [(9, dt.date(2030, 1, 2), dt.date(2030, 1, 3)), (4, dt.date(2030, 3, 1), dt.date(2030, 3, 2)),
                 (5, dt.date(2030, 2, 1), dt.date(2030, 2, 9))]
    one, each = rm.Plan(), rm.Plan()
    rm.plan_listing_nights(one, 7, spans, occupying)
    for start, end in spans:
        rm.plan_nights(each, 7, start, end, occupying)
    assert [op[0] for op in one.ops] == ["hset", "hdel"]
    merged = {name: {} for name in ("hset", "hdel")}
    for op in each.ops:
        merged[op[0]].update(op[2] if op[0] == "hset" else dict.fromkeys(op[2]))
    assert one.ops[0][2] == merged["hset"] == {"2030-01-02": "9", "2030-03-01": "4"}
    assert sorted(one.ops[1][2]) == sorted(merged["hdel"]) == ["2030-01-01", "2030-01-03", "2030-03-02"]


@pytest.mark.parametrize("start, end", [
    (dt.date(2031, 1, 1), dt.date(2031, 1, 1)), (dt.date(2031, 1, 2), dt.date(2031, 1, 1)),
    (dt.date(2030, 12, 30), dt.date(2031, 3, 2)), (dt.date(2032, 2, 27), dt.date(2032, 3, 2)),
    (dt.date(1, 1, 1), dt.date(1, 1, 3)), (dt.date(9999, 12, 30), dt.date(9999, 12, 31)),
])
def test_the_nights_of_a_stay_are_each_day_from_check_in_to_before_check_out(start, end):
    assert rm.nights_between(start, end) == [start + dt.timedelta(days=i) for i in range((end - start).days)]
