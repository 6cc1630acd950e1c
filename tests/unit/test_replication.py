"""The replication service (booking_core.services.replication) on in-memory fakes of MySQL and Redis."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import itertools
import threading

import pytest

from booking_core.domain import read_model as rm
from booking_core.services import replication
from tests.unit.replication_fakes import FakeChangeLog, FakeReadModel

JAN = dt.date(2030, 1, 1)


def day(n: int) -> dt.date:
    return JAN + dt.timedelta(days=n)


@pytest.fixture
def db():
    db = FakeChangeLog()
    db.insert("users", id=1, email="ana@example.com", name="Ana")
    db.insert("listings", id=7, host_id=1, title="Loft", city="Lisbon", max_guests=4, nightly_price_cents=9000,
              currency="EUR", active=1)
    return db


@pytest.fixture
def redis():
    return FakeReadModel()


def booking(db, booking_id, listing_id=7, start=0, nights=3, status="confirmed", user_id=1):
    return db.insert("bookings", id=booking_id, booking_key=f"k{booking_id}", user_id=user_id,
                     listing_id=listing_id, check_in=day(start), check_out=day(start + nights), guests=1,
                     status=status, amount_cents=100, currency="EUR")


def test_applying_changes_writes_each_rows_hash_and_deletes_exactly_the_applied_log_rows(db, redis):
    applied = replication.apply_batch(db, redis)
    assert applied == 2 and db.log == []
    assert redis.keys["user:1"][1]["email"] == "ana@example.com"
    assert redis.keys["listings:city:lisbon"][1] == {rm.listing_member(7): 9000.0}


def test_a_batch_takes_at_most_batch_size_changes_and_leaves_the_rest(db, redis):
    assert replication.apply_batch(db, redis, batch_size=1) == 1
    assert len(db.log) == 1


def test_applying_the_same_changes_twice_leaves_identical_contents(db, redis):
    booking(db, 1)
    db.update("listings", 7, city="Porto", nightly_price_cents=7000)
    changes = list(db.log)
    replication.apply_batch(db, redis)
    first = copy.deepcopy(redis.keys)
    db.log = changes  # the same batch again, as after a crash between the Redis write and the delete
    replication.apply_batch(db, redis)
    assert redis.keys == first


def test_changes_applied_in_any_order_give_the_same_model(db, redis):
    booking(db, 1)
    db.update("bookings", 1, status="cancelled")
    booking(db, 2, start=1)
    db.update("listings", 7, active=0)
    results = []
    for order in itertools.permutations(db.log):
        model = FakeReadModel()
        db_copy = copy.copy(db)
        db_copy.log = list(order)
        replication.apply_batch(db_copy, model, batch_size=1000)
        results.append(model.keys)
    assert all(r == results[0] for r in results)


def test_changing_the_city_moves_the_listing_and_deactivating_it_removes_it_from_every_index(db, redis):
    replication.apply_batch(db, redis)
    db.update("listings", 7, city="Porto")
    replication.apply_batch(db, redis)
    assert "listings:city:lisbon" not in redis.keys
    assert rm.listing_member(7) in redis.keys["listings:city:porto"][1]
    db.update("listings", 7, active=0)
    replication.apply_batch(db, redis)
    assert "listings:city:porto" not in redis.keys and "listings:by_price" not in redis.keys
    assert redis.keys["listing:7"][1]["active"] == "0"


def test_a_deleted_row_loses_its_key_and_memberships(db, redis):
    booking(db, 1)
    replication.apply_batch(db, redis)
    db.delete("bookings", 1)
    replication.apply_batch(db, redis)
    assert "booking:1" not in redis.keys and "user:1:bookings" not in redis.keys
    assert "listing:7:nights" not in redis.keys


def test_a_confirmed_booking_takes_its_nights_and_a_cancelled_one_frees_them(db, redis):
    booking(db, 1, start=0, nights=2)
    replication.apply_batch(db, redis)
    assert redis.keys["listing:7:nights"][1] == {"2030-01-01": "1", "2030-01-02": "1"}
    db.update("bookings", 1, status="cancelled")
    replication.apply_batch(db, redis)
    assert "listing:7:nights" not in redis.keys


def test_releasing_one_booking_never_frees_a_night_another_booking_occupies(db, redis):
    booking(db, 1, start=0, nights=3)
    booking(db, 2, start=2, nights=2)  # overlaps night 2 (possible only by hand, but must stay correct)
    replication.apply_batch(db, redis)
    db.update("bookings", 2, status="released")
    replication.apply_batch(db, redis)
    assert redis.keys["listing:7:nights"][1] == {"2030-01-01": "1", "2030-01-02": "1", "2030-01-03": "1"}
    db.update("bookings", 1, status="released")
    booking(db, 3, start=1, nights=1)
    replication.apply_batch(db, redis)
    assert redis.keys["listing:7:nights"][1] == {"2030-01-02": "3"}


def test_moving_a_booking_to_other_dates_frees_the_old_nights(db, redis):
    booking(db, 1, start=0, nights=2)
    replication.apply_batch(db, redis)
    db.update("bookings", 1, check_in=day(10), check_out=day(11))
    replication.apply_batch(db, redis)
    assert redis.keys["listing:7:nights"][1] == {"2030-01-11": "1"}


def test_nothing_is_applied_while_another_replicator_holds_the_lock(db, redis):
    db.locked_by_other = True
    assert replication.apply_batch(db, redis) is None
    assert len(db.log) == 2 and redis.keys == {}
    assert replication.drain(db, redis)["status"] == "busy"


def test_reconcile_of_an_empty_model_loads_everything_and_equals_replication(db, redis):
    booking(db, 1)
    db.insert("payments", id=1, booking_id=1, booking_key="k1", user_id=1, amount_cents=100, currency="EUR",
              provider="sandbox", provider_ref="ch_1", status="captured")
    replicated = FakeReadModel()
    replication.apply_batch(db, replicated)
    report = replication.reconcile(db, redis)
    assert report["rows"] == {"missing": 4, "stale": 0, "orphan": 0}
    assert redis.snapshot() == replicated.snapshot()
    assert replication.reconcile(db, redis)["repaired"] == 0


def test_reconcile_repairs_and_counts_injected_drift(db, redis):
    booking(db, 1)
    replication.reconcile(db, redis)
    redis.keys["listing:7"][1]["title"] = "wrong"
    redis.keys["listings:by_price"][1]["00000000000000000099"] = 1.0
    del redis.keys["user:1"]
    report = replication.reconcile(db, redis)
    assert report["rows"] == {"missing": 1, "stale": 1, "orphan": 0}
    assert report["members"] == {"missing": 0, "stale": 0, "orphan": 1}
    assert replication.reconcile(db, redis)["repaired"] == 0


def test_reconcile_writes_a_listings_json_key_where_it_is_missing_stale_or_its_hash_still_holds_the_field(db, redis):
    """A listing without its JSON key (written before it existed), with JSON of another version of the row, or
    whose hash still carries the old `_json` field, is repaired, and counted once as a stale row."""
    for listing_id in (8, 9):
        db.insert("listings", id=listing_id, host_id=1, title="Barn", city="Porto", max_guests=2,
                  nightly_price_cents=5000, currency="EUR", active=1)
    replication.apply_batch(db, redis)
    want = copy.deepcopy(redis.snapshot())
    del redis.keys[rm.json_key(7)]
    redis.keys[rm.json_key(8)] = (rm.STRING, want[rm.json_key(7)][1])
    redis.keys["listing:9"][1][rm.JSON_FIELD] = want[rm.json_key(9)][1]
    del redis.keys[rm.json_key(9)]
    report = replication.reconcile(db, redis)
    assert report["rows"] == {"missing": 0, "stale": 3, "orphan": 0}
    assert redis.snapshot() == want


def test_reconcile_removes_a_listings_json_key_whose_listing_is_gone_and_keeps_the_others(db, redis):
    """The listing's JSON lives in a string key of its own (listing:{id}:json): one left without its listing is
    an orphan like a row hash, and one with its listing is not (the orphan pass must not take it for an index)."""
    replication.apply_batch(db, redis)
    kept = copy.deepcopy(redis.keys[rm.json_key(7)])
    redis.keys[rm.json_key(9)] = (rm.STRING, '{"id":9}')  # its listing was deleted, the JSON key stayed
    report = replication.reconcile(db, redis)
    assert report["rows"] == {"missing": 0, "stale": 0, "orphan": 1}
    assert rm.json_key(9) not in redis.keys
    assert redis.keys[rm.json_key(7)] == kept
    assert replication.reconcile(db, redis)["repaired"] == 0


def test_ensure_loaded_loads_only_when_the_model_is_empty(db, redis):
    assert replication.ensure_loaded(db, redis)["rows"]["missing"] == 2
    assert replication.ensure_loaded(db, redis) is None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_tail_applies_changes_as_they_come_until_its_run_time_is_over(db, redis):
    clock = Clock()
    writes = iter([lambda: booking(db, 1), lambda: db.update("bookings", 1, status="cancelled")])

    def sleep(seconds):
        clock.sleep(seconds)
        next(writes, lambda: None)()

    stats = replication.tail(db, redis, run_s=2.0, clock=clock, sleep=sleep)
    assert stats["applied"] == 4 and stats["full_loads"] == 1 and stats["errors"] == 0
    assert redis.keys["booking:1"][1]["status"] == "cancelled" and db.log == []
    assert 2.0 <= clock.now < 2.1


def test_the_tail_survives_a_failing_batch_and_carries_on(db, redis):
    clock = Clock()
    rows = db.rows
    failures = iter([True])

    def flaky_rows(entity, ids):
        if next(failures, False):
            raise ConnectionError("MySQL went away")
        return rows(entity, ids)

    db.rows = flaky_rows
    redis.mark_loaded()
    stats = replication.tail(db, redis, run_s=3.0, clock=clock, sleep=clock.sleep)
    assert stats["errors"] == 1 and stats["applied"] == 2 and db.log == []


def test_after_a_full_batch_the_tail_claims_again_without_first_looking_for_pending_changes(db, redis):
    clock = Clock()
    redis.mark_loaded()
    for i in range(2, 5):
        db.insert("users", id=i, email=f"u{i}@example.com", name="U")  # five changes with the fixture's two
    looks = []
    has_pending = db.has_pending
    db.has_pending = lambda: looks.append(len(db.log)) or has_pending()
    stats = replication.tail(db, redis, run_s=0, stop=lambda: clock.now > 0.01, clock=clock, sleep=clock.sleep,
                             batch_size=2)
    assert stats["applied"] == 5 and stats["batches"] == 3
    assert looks[:2] == [5, 0]  # before the first batch, then only after the third (partial) one


def test_a_tail_with_run_time_zero_runs_until_stopped(db, redis):
    clock = Clock()
    stats = replication.tail(db, redis, run_s=0, stop=lambda: clock.now > 100, clock=clock, sleep=clock.sleep)
    assert clock.now > 100 and stats["applied"] == 2


def test_the_handler_reads_its_mode_from_the_event_and_a_scheduled_event_means_tail():
    from replication_fn import app
    from tests.conftest import load_event

    assert app.mode_of(load_event("replication_fn/tail.json")) == "tail"
    assert app.mode_of(load_event("replication_fn/scheduled_event.json")) == "tail"
    assert app.mode_of(load_event("replication_fn/reconcile.json")) == "reconcile"
    assert app.mode_of(load_event("replication_fn/once.json")) == "once"
    with pytest.raises(ValueError):
        app.mode_of({"mode": "rewind"})


def test_the_tail_stops_before_the_invocation_times_out_and_zero_means_until_stopped(monkeypatch):
    from replication_fn import app

    class Context:
        def get_remaining_time_in_millis(self):
            return 20_000

    monkeypatch.setenv("REPLICATION_RUN_S", "55")
    assert app.run_seconds(Context()) == 20 - app.TIMEOUT_MARGIN_S
    assert app.run_seconds(None) == 55
    monkeypatch.setenv("REPLICATION_RUN_S", "0")
    assert app.run_seconds(Context()) == 0


@pytest.fixture
def wired(db, redis):
    """The handler's adapters (from bootstrap) replaced by the fakes."""
    from booking_core import bootstrap

    bootstrap.override("change_log", db)
    bootstrap.override("read_model", redis)
    yield
    bootstrap.reset()


def test_the_handler_runs_once_and_reconcile_on_the_adapters_it_is_given(wired, db, redis):
    from replication_fn import app

    booking(db, 1)
    result = app.handler({"mode": "once"}, None)
    assert result["applied"] == 3 and db.log == []  # the full load leaves the log; re-applying it is harmless
    assert redis.keys["booking:1"][1]["status"] == "confirmed"
    redis.keys["booking:1"][1]["status"] = "stale"
    assert app.handler({"mode": "reconcile"}, None)["rows"]["stale"] == 1


def test_a_damaged_stored_hash_does_not_block_replication_and_reconcile_cleans_up_after_it(db, redis):
    booking(db, 1)
    replication.apply_batch(db, redis)
    del redis.keys["listing:7"][1]["city"]  # damaged by hand in redis-cli
    del redis.keys["booking:1"][1]["check_in"]
    db.update("listings", 7, city="Porto")
    db.update("bookings", 1, status="cancelled")
    assert replication.apply_batch(db, redis) == 2
    assert rm.listing_member(7) in redis.keys["listings:city:porto"][1]
    assert "listing:7:nights" not in redis.keys  # freed already: the new row's own span covers them
    report = replication.reconcile(db, redis)
    assert report["members"]["orphan"] == 2  # the Lisbon members (city, city+capacity) the damaged hash could not name
    assert "listings:city:lisbon" not in redis.keys and "listing:7:nights" not in redis.keys
    assert "listings:city_guests:4:lisbon" not in redis.keys


def test_each_applied_batch_reports_its_oldest_changes_age_plus_the_time_to_write_redis(db, redis):
    booking(db, 1)
    db.log = [dataclasses.replace(change, age_ms=age) for change, age in zip(db.log, (40.0, 250.0, 5.0),
                                                                              strict=True)]
    ticks = iter([10.0, 10.02])  # claimed at 10 s, Redis written 20 ms later
    heard: list[float] = []

    replication.apply_batch(db, redis, observe_lag=heard.append, clock=lambda: next(ticks))
    replication.apply_batch(db, redis, observe_lag=heard.append)  # nothing left: an empty batch reports nothing

    assert heard == [pytest.approx(270.0)]


def drifted_catalogue(db, redis):
    """Twelve listings with bookings, loaded, then drift of every kind spread across the keys."""
    for i in range(8, 20):
        db.insert("listings", id=i, host_id=1, title=f"Flat {i}", city=("Porto", "Faro")[i % 2], max_guests=i % 7,
                  nightly_price_cents=5000 + i % 3, currency="EUR", active=int(i % 5 != 0))
        booking(db, i, listing_id=i, start=i)
    replication.reconcile(db, redis)
    redis.keys["listing:9"][1]["title"] = "wrong"  # stale row
    del redis.keys["booking:12"]  # missing row
    redis.keys["user:99"] = (rm.HASH, {"id": "99"})  # orphan row
    redis.keys["listing:123:nights"] = (rm.HASH, {"2030-01-01": "5"})  # nights of a listing that is gone
    redis.keys["listing:11:nights"][1]["2030-06-01"] = "11"  # an orphan night
    del redis.keys["listings:by_price"][1][rm.listing_member(13)]  # a missing member
    redis.keys["listings:guests:3"][1][rm.listing_member(14)] = 1.0  # a member in the wrong bucket
    redis.keys["listings:city:porto"][1][rm.listing_member(8)] = 1.0  # a stale score
    redis.keys["listings:city_guests:2:faro"] = (rm.HASH, {"x": "1"})  # an index of the wrong type
    redis.keys["user:1:bookings"][1]["not-an-id"] = 1.0  # a member that names nothing
    redis.keys["booking:14"] = (rm.ZSET, {"x": 1.0})  # a row key of the wrong type
    redis.keys["listing:15:nights"] = (rm.ZSET, {"2030-01-01": 1.0})  # nights of the wrong type


def test_reconcile_in_chunks_of_one_finds_and_repairs_exactly_what_one_big_chunk_does(db, redis):
    drifted_catalogue(db, redis)
    other = copy.deepcopy(redis)
    small = replication.reconcile(db, redis, chunk=1)
    big = replication.reconcile(db, other, chunk=10_000)
    assert {k: small[k] for k in ("rows", "members")} == {k: big[k] for k in ("rows", "members")}
    assert small["rows"] == {"missing": 1, "stale": 2, "orphan": 1}
    # members: 2 orphans (guests:3, the stray user member) + 2 nights; stale: 1 score + the wrong-typed index and
    # nights (1 each); missing: by_price 13, what the wrong-typed index held (listing 9, faro, 2 guests) and the
    # three nights of listing 15
    assert small["members"] == {"missing": 5, "stale": 3, "orphan": 4}
    assert redis.snapshot() == other.snapshot()
    assert replication.reconcile(db, redis, chunk=1)["repaired"] == 0


def test_reconcile_reads_mysql_and_redis_a_chunk_at_a_time_never_the_whole_model(db, redis, monkeypatch):
    drifted_catalogue(db, redis)
    monkeypatch.setattr(redis, "snapshot", lambda: pytest.fail("reconcile must not load the whole model"))
    largest = []
    rows_after, scores = db.rows_after, redis.scores
    monkeypatch.setattr(db, "rows_after", lambda e, a, n: largest.append(n) or rows_after(e, a, n))
    monkeypatch.setattr(redis, "scores", lambda pairs: largest.append(len(pairs) // 4) or scores(pairs))
    assert replication.reconcile(db, redis, chunk=3)["repaired"] > 0
    assert max(largest) <= 3  # rows per read; sorted-set lookups at most the 4 memberships of each


class RecordingReadModel(FakeReadModel):
    """Records the order of Redis reads and writes; each write waits (up to a second) until the replicator has read
    its next batch from the change log, so a pipelined replicator shows the overlap and an unpipelined one does not."""

    def __init__(self, db, fail_on_write: int | None = None):
        super().__init__()
        self.events: list[tuple] = []
        self.reads = 0
        self.read = threading.Condition()
        self.fail_on_write = fail_on_write
        pending = db.pending

        def recorded_pending(limit, excluding=()):
            with self.read:
                self.events.append(("pending", tuple(sorted(excluding))))
                self.reads += 1
                self.read.notify_all()
            return pending(limit, excluding)

        db.pending = recorded_pending

    def stored(self, keys):
        self.events.append(("stored", tuple(keys)))
        return super().stored(keys)

    def execute(self, plan):
        with self.read:  # write k waits for read k + 1 of the log
            overlapped = self.read.wait_for(lambda: self.reads > self.executed + 1, 1.0)
        self.events.append(("written", self.executed + 1, overlapped))
        if self.executed + 1 == self.fail_on_write:
            self.executed += 1
            raise ConnectionError("Redis went away")
        super().execute(plan)


def test_changes_to_one_row_across_pipelined_batches_end_in_its_last_state_and_reads_follow_writes(db, redis):
    model = RecordingReadModel(db)
    cities = iter(["Porto", "Faro", "Braga", "Evora", "Lisbon"])
    pending = db.pending

    def writes_arrive_while_replicating(limit, excluding=()):
        # The same listing changes (city, so its index memberships move) between every two reads of the log.
        city = next(cities, None)
        if city is not None:
            db.update("listings", 7, city=city, max_guests=len(city))
            booking(db, 100 + len(db.log), start=len(city))
        return pending(limit, excluding)

    db.pending = writes_arrive_while_replicating
    report = replication.drain(db, model, batch_size=2)

    assert report["applied"] == 2 + 5 * 2 and db.log == []
    # Every batch's stored hashes were read after the previous batch was written, and the next batch was read from
    # the log while the previous one was being written (the pipeline); the last write found no more to read.
    kinds = [event[0] for event in model.events if event[0] != "pending"]
    assert kinds == ["stored", "written"] * report["batches"]
    assert [event[2] for event in model.events if event[0] == "written"] == [True] * report["batches"]
    expected = FakeReadModel()
    replication.reconcile(db, expected)
    assert model.snapshot() == expected.snapshot()
    assert model.keys["listing:7"][1]["city"] == "Lisbon"
    assert [key for key in model.keys if key.startswith("listings:city:")] == ["listings:city:lisbon"]


def test_a_failure_writing_batch_n_deletes_neither_it_nor_the_batch_read_behind_it(db, redis):
    for i in range(2, 7):
        db.insert("users", id=i, email=f"u{i}@example.com", name="U")  # seven changes with the fixture's two
    ids = [c.id for c in db.log]
    model = RecordingReadModel(db, fail_on_write=2)

    with pytest.raises(ConnectionError):
        replication.drain(db, model, batch_size=2)

    assert ("pending", tuple(ids[2:4])) in model.events  # batch 3 was read while batch 2 was being written
    assert [c.id for c in db.log] == ids[2:]  # only batch 1 is gone: 2 failed, 3 was read but not written
    model.fail_on_write = None
    assert replication.drain(db, model, batch_size=2)["applied"] == 5 and db.log == []
    expected = FakeReadModel()
    replication.reconcile(db, expected)
    assert model.snapshot() == expected.snapshot()


def test_a_failure_reading_the_next_batch_waits_for_the_write_in_flight_before_releasing_the_lock(db, redis):
    for i in range(2, 5):
        db.insert("users", id=i, email=f"u{i}@example.com", name="U")
    model = RecordingReadModel(db)
    encoded_rows = db.encoded_rows
    calls = itertools.count()

    def failing_second_read(entity, ids, columns=None):
        if entity == "users" and next(calls) == 1:
            raise ConnectionError("MySQL went away")
        return encoded_rows(entity, ids, columns)

    db.encoded_rows = failing_second_read
    exclusive = db.exclusive

    @contextlib.contextmanager
    def recorded_lock(wait_s=0):
        try:
            with exclusive(wait_s) as got:
                yield got
        finally:
            model.events.append(("released",))

    db.exclusive = recorded_lock
    before = list(db.log)

    with pytest.raises(ConnectionError):
        replication.drain(db, model, batch_size=2)

    assert [event for event in model.events if event[0] in ("written", "released")] == [("written", 1, True),
                                                                                          ("released",)]
    assert db.log == before  # batch 1 was written but not deleted: it is applied again, harmlessly
