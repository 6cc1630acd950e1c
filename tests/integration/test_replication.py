"""Replication on the real MariaDB and Redis, driven step by step (no running loop).

These tests use their own database (this run's name + `_repl`) and Redis prefix, so the local stack's
replication loop, which tails the run's main database, never consumes their change rows.
"""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from booking_core import config
from booking_core.adapters.mysql import connect
from booking_core.adapters.mysql_change_log import MySqlChangeLog
from booking_core.adapters.redis_read_model import RedisReadModel
from booking_core.domain import read_model as rm
from booking_core.services import replication
from infra.demo_data import load_demo_data
from infra.migrate import drop_database, migrate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings():
    settings = dataclasses.replace(config.mysql_settings(), database=config.mysql_settings().database + "_repl")
    migrate(settings)
    load_demo_data(settings)
    yield settings
    drop_database(settings)


@pytest.fixture
def prefix(redis_client):
    """A fresh prefix per test, under the run's own; its keys are deleted after the test (left until the session's
    end, they looked to test_redis_key_lifetimes like keys of the stack's that nobody owns)."""
    prefix = f"{config.redis_prefix()}repl{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in redis_client.scan_iter(match=prefix + "*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def change_log(settings):
    log = MySqlChangeLog(settings)
    yield log
    log.close()


@pytest.fixture
def model(redis_client, prefix):
    return RedisReadModel(redis_client, prefix)


@pytest.fixture
def sql(settings):
    conn = connect(settings, autocommit=True)

    def run(statement, *args):
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.lastrowid

    yield run
    conn.close()


def dump(redis, prefix: str) -> dict:
    """Every key under the prefix with its type and contents, but the registry of model keys (bookkeeping whose
    bits may outlive their keys)."""
    found = {}
    for key in redis.scan_iter(match=prefix + "*", count=1000):
        if rm.is_registry_key(key[len(prefix):]):
            continue
        kind = redis.type(key)
        if kind == "hash":
            value = redis.hgetall(key)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        else:
            value = redis.get(key)
        found[key[len(prefix):]] = (kind, value)
    return found


def drain(change_log, model) -> int:
    report = replication.drain(change_log, model)
    assert report["status"] == "ok"
    return report["applied"]


def make_changes_on_every_table(sql) -> dict:
    """An insert, an update and a delete on each replicated table, in plain SQL."""
    tag = uuid.uuid4().hex[:8]
    user = sql("INSERT INTO users (email, name) VALUES (%s, 'Gap Tester')", f"{tag}@example.com")
    sql("UPDATE users SET name='Renamed' WHERE id=%s", user)
    gone_user = sql("INSERT INTO users (email) VALUES (%s)", f"{tag}-gone@example.com")
    sql("DELETE FROM users WHERE id=%s", gone_user)
    listing = sql("INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents)"
                  " VALUES (1, 'Hut', 'Faro', 3, 6100)")
    sql("UPDATE listings SET city='Braga', nightly_price_cents=6200 WHERE id=%s", listing)
    sql("UPDATE listings SET active=0 WHERE id=1")
    booking = sql("INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, status, amount_cents)"
                  " VALUES (%s, %s, %s, '2031-05-01', '2031-05-04', 'confirmed', 18600)", tag, user, listing)
    released = sql("INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, status)"
                   " VALUES (%s, %s, %s, '2031-06-01', '2031-06-03', 'confirmed')", tag + "r", user, listing)
    sql("UPDATE bookings SET status='released' WHERE id=%s", released)
    payment = sql("INSERT INTO payments (booking_id, booking_key, user_id, amount_cents) VALUES (%s, %s, %s, 18600)",
                  booking, tag, user)
    gone_payment = sql("INSERT INTO payments (booking_id, booking_key, user_id, amount_cents)"
                       " VALUES (%s, %s, %s, 1)", released, tag + "r", user)
    sql("DELETE FROM payments WHERE id=%s", gone_payment)
    return {"user": user, "gone_user": gone_user, "listing": listing, "booking": booking, "released": released,
            "payment": payment, "gone_payment": gone_payment}


def test_plain_sql_changes_on_every_table_reach_their_full_redis_form(change_log, model, sql, redis_client, prefix):
    drain(change_log, model)
    ids = make_changes_on_every_table(sql)
    assert drain(change_log, model) > 0
    r, p = redis_client, prefix
    assert r.hget(f"{p}user:{ids['user']}", "name") == "Renamed"
    assert not r.exists(f"{p}user:{ids['gone_user']}")
    member = rm.listing_member(ids["listing"])
    assert r.zscore(f"{p}listings:city:braga", member) == 6200
    assert r.zscore(f"{p}listings:city:faro", member) is None
    assert r.zscore(f"{p}listings:by_price", rm.listing_member(1)) is None  # deactivated
    assert r.hgetall(f"{p}listing:{ids['listing']}:nights") == {
        "2031-05-01": str(ids["booking"]), "2031-05-02": str(ids["booking"]), "2031-05-03": str(ids["booking"])}
    assert r.hget(f"{p}booking:{ids['released']}", "status") == "released"
    assert r.zrange(f"{p}user:{ids['user']}:bookings", 0, -1) == [str(ids["booking"]), str(ids["released"])]
    assert r.zrange(f"{p}user:{ids['user']}:payments", 0, -1) == [str(ids["payment"])]
    assert not r.exists(f"{p}payment:{ids['gone_payment']}")
    with connect(change_log.settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM change_log")
        assert cur.fetchone()["n"] == 0  # applied rows are pruned


def test_a_slow_transaction_committing_a_lower_id_late_is_not_skipped(change_log, model, sql, settings,
                                                                      redis_client, prefix):
    drain(change_log, model)
    slow, fast = connect(settings), connect(settings, autocommit=True)
    try:
        # GIVEN T1 inserts a user and stays open (its change row has the lower id)
        with slow.cursor() as cur:
            cur.execute("INSERT INTO users (email) VALUES (%s)", (f"t1-{uuid.uuid4().hex[:8]}@example.com",))
            t1_user = cur.lastrowid
        # AND T2 inserts a user and commits
        with fast.cursor() as cur:
            cur.execute("INSERT INTO users (email) VALUES (%s)", (f"t2-{uuid.uuid4().hex[:8]}@example.com",))
            t2_user = cur.lastrowid
        assert t1_user < t2_user
        # WHEN the replicator runs, T2's row arrives and T1's is not lost
        assert drain(change_log, model) == 1
        assert redis_client.exists(f"{prefix}user:{t2_user}")
        assert not redis_client.exists(f"{prefix}user:{t1_user}")
        # AND after T1 commits, the next run applies it
        slow.commit()
        assert drain(change_log, model) == 1
    finally:
        slow.close()
        fast.close()
    assert redis_client.exists(f"{prefix}user:{t1_user}") and redis_client.exists(f"{prefix}user:{t2_user}")


def test_applying_a_batch_twice_gives_identical_redis_contents(change_log, model, sql, settings, redis_client,
                                                               prefix):
    replication.ensure_loaded(change_log, model)
    drain(change_log, model)
    make_changes_on_every_table(sql)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, entity, entity_id, op FROM change_log ORDER BY id")
        batch = cur.fetchall()
    assert len(batch) > 10
    drain(change_log, model)
    once = dump(redis_client, prefix)
    # The same change rows again, as after a crash between the Redis write and their deletion.
    sql("INSERT INTO change_log (id, entity, entity_id, op) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * len(batch)), *[v for row in batch for v in row.values()])
    assert drain(change_log, model) == len(batch)
    assert dump(redis_client, prefix) == once
    # And the result is exactly what a full load from MySQL builds.
    assert replication.reconcile(change_log, model)["repaired"] == 0


def test_reconcile_restores_a_deleted_model_exactly_and_leaves_the_decision_store_alone(change_log, model, sql,
                                                                                        redis_client, prefix):
    make_changes_on_every_table(sql)
    replication.reconcile(change_log, model)
    drain(change_log, model)
    redis_client.hset(f"{prefix}req:some-key", mapping={"status": "pending"})
    before = dump(redis_client, prefix)
    model_keys = [k for k in before if rm.is_model_key(k)]
    row_hashes = sum(1 for k in model_keys if rm.is_row_key(k))
    members = sum(len(before[k][1]) for k in model_keys if rm.is_index_key(k))
    redis_client.delete(*[prefix + k for k in model_keys])

    report = replication.reconcile(change_log, model)

    assert dump(redis_client, prefix) == before
    assert report["rows"] == {"missing": row_hashes, "stale": 0, "orphan": 0}
    assert report["members"] == {"missing": members, "stale": 0, "orphan": 0}
    assert redis_client.hget(f"{prefix}req:some-key", "status") == "pending"


def test_reconcile_repairs_and_counts_a_wrong_field_a_stray_member_and_a_missing_key(change_log, model, sql,
                                                                                    redis_client, prefix):
    ids = make_changes_on_every_table(sql)
    replication.reconcile(change_log, model)
    drain(change_log, model)
    before = dump(redis_client, prefix)
    redis_client.hset(f"{prefix}listing:2", "nightly_price_cents", "1")  # a wrong field
    redis_client.zadd(f"{prefix}listings:city:porto", {rm.listing_member(999999): 1})  # a stray member
    redis_client.hset(f"{prefix}listing:{ids['listing']}:nights", "2031-07-01", "424242")  # a stray night
    redis_client.delete(f"{prefix}booking:{ids['booking']}")  # a missing key
    orphan = rm.Plan()
    orphan.hset("payment:999999", {"id": "999999"})  # an orphan record: written by replication, its row since gone
    orphan.set(rm.json_key(999999), '{"id":999999}')  # a listing's JSON, its listing since gone
    model.execute(orphan)
    redis_client.hset(f"{prefix}payment:999998", mapping={"id": "999998"})  # one written by hand, around it

    report = replication.reconcile(change_log, model)

    assert report["rows"] == {"missing": 1, "stale": 1, "orphan": 2}
    assert report["members"] == {"missing": 0, "stale": 0, "orphan": 2}
    # The registry walk does not see a key written around the replicator; a full scan does.
    assert redis_client.exists(f"{prefix}payment:999998")
    assert replication.reconcile(change_log, model, full_scan=True)["rows"]["orphan"] == 1
    assert dump(redis_client, prefix) == before
    assert replication.reconcile(change_log, model)["repaired"] == 0


def test_only_one_replicator_applies_at_a_time(change_log, model, sql, settings):
    sql("UPDATE users SET name='Locked Out' WHERE id=2")
    other = connect(settings, autocommit=True)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0) AS got", (change_log.lock_name(),))
            assert cur.fetchone()["got"] == 1
        assert replication.apply_batch(change_log, model) is None
        with pytest.raises(replication.ReplicatorBusy):
            replication.reconcile(change_log, model, wait_s=0)
        with other.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (change_log.lock_name(),))
    finally:
        other.close()
    assert replication.apply_batch(change_log, model) >= 1


def test_the_unit_tests_fake_read_model_ends_where_real_redis_does(model):
    """Contract: the same changes through FakeReadModel and RedisReadModel leave the same model."""
    import datetime as dt

    from tests.unit.replication_fakes import FakeChangeLog, FakeReadModel

    db, fake = FakeChangeLog(), FakeReadModel()
    db.insert("users", id=1, email="a@example.com", name="A")
    db.insert("listings", id=7, host_id=1, title="Loft", city="Lisbon", max_guests=4, nightly_price_cents=9000,
              currency="EUR", active=1)
    db.insert("bookings", id=1, booking_key="k1", user_id=1, listing_id=7, check_in=dt.date(2030, 1, 1),
              check_out=dt.date(2030, 1, 4), guests=1, status="confirmed", amount_cents=1, currency="EUR")
    log = list(db.log)
    db.update("listings", 7, city="Porto")
    db.update("bookings", 1, check_out=dt.date(2030, 1, 2))
    db.delete("users", 1)
    replay = log + list(db.log)
    for read_model in (fake, model):
        db.log = list(replay)
        replication.drain(db, read_model)
        assert replication.reconcile(db, read_model)["repaired"] == 0  # and a full load agrees, on both
    assert fake.snapshot() == model.snapshot()
    assert "listing:7:nights" in fake.snapshot()


def test_the_change_log_retention_purge_reads_an_index_not_the_whole_log(settings):
    """A purge that scans change_log locks every row it reads: with 2.25 million pending changes (bench-scale at
    500,000 listings) it and the replicator's SKIP LOCKED claim filled the 126 MB buffer pool with lock heaps and
    MariaDB aborted itself. An index on changed_at makes it read only the rows old enough to go."""
    from booking_core.adapters.mysql_retries import _PURGES

    conn = connect(settings, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN " + _PURGES["change_log"].format(cutoff="CURRENT_TIMESTAMP(6) - INTERVAL 1 SECOND"),
                        (1000,))
            plan = cur.fetchone()
    finally:
        conn.close()
    assert plan["type"] != "ALL" and plan["key"] == "ix_change_log_changed_at", plan


def test_rows_encoded_by_mysql_are_what_encode_row_makes_of_the_typed_rows(change_log, sql):
    """Contract: the replicator's rows, encoded to strings by MySQL (JSON_ARRAYAGG), equal encode_row of the rows
    PyMySQL types: timestamps with microseconds, dates, the active flag, NULL columns left out, any text."""
    ids = make_changes_on_every_table(sql)
    odd = 'quote " backslash \\ newline \n tab \t unicode ação 東京 emoji 🏠 nul-free'
    listing = sql("INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents, active)"
                  " VALUES (1, %s, 'Évora', 2, 1, 0)", odd)
    payment = sql("INSERT INTO payments (booking_id, booking_key, user_id, amount_cents, provider_ref)"
                  " VALUES (%s, %s, %s, 5, NULL)", ids["booking"], uuid.uuid4().hex, ids["user"])
    wanted = {"users": [1, 2, ids["user"], ids["gone_user"]], "listings": [1, 2, ids["listing"], listing],
              "bookings": [ids["booking"], ids["released"], 10**12], "payments": [ids["payment"], payment]}
    for entity, entity_ids in wanted.items():
        typed = {i: rm.encode_row(entity, row) for i, row in change_log.rows(entity, entity_ids).items()}
        assert change_log.encoded_rows(entity, entity_ids) == typed
        assert typed  # the ids exist (those that should)
        scanned = change_log.rows_after(entity, 0, 100_000)  # reconcile's chunks, encoded the same way
        assert scanned == [rm.encode_row(entity, row) for _, row in
                           sorted(change_log.rows(entity, [int(r["id"]) for r in scanned]).items())]
        narrow = change_log.encoded_rows(entity, entity_ids, rm.MEMBERSHIP_COLUMNS[entity])
        assert {i: rm.memberships(entity, row) for i, row in narrow.items()} == {
            i: rm.memberships(entity, row) for i, row in typed.items()}
    assert change_log.encoded_rows("listings", [listing])[listing]["title"] == odd
    assert "provider_ref" not in change_log.encoded_rows("payments", [payment])[payment]
    assert change_log.encoded_rows("users", []) == {} and change_log.encoded_rows("users", [10**12]) == {}


def test_a_plan_with_a_wrong_typed_key_applies_its_other_writes_and_then_fails_like_exec(model, redis_client,
                                                                                        prefix):
    """The plan's script applies every op and reports the first error, as MULTI/EXEC did: a wrong-typed key
    fails the batch (retried, then repaired by reconcile) without leaving the batch's other keys half written."""
    import redis

    redis_client.set(f"{prefix}listing:5:nights", "not a hash")
    plan = rm.Plan()
    plan.hset("listing:4", {"id": "4", "title": "before"})
    plan.hset("listing:5:nights", {"2031-01-01": "9"})
    plan.zadd("listings:by_price", rm.listing_member(4), 123456789012.25)
    plan.hset("listing:6", {"id": "6"})
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        model.execute(plan)
    assert redis_client.hgetall(f"{prefix}listing:4") == {"id": "4", "title": "before"}
    assert redis_client.hgetall(f"{prefix}listing:6") == {"id": "6"}
    assert redis_client.zscore(f"{prefix}listings:by_price", rm.listing_member(4)) == 123456789012.25


def test_a_plan_merging_thousands_of_writes_to_one_key_applies_them_all(model, redis_client, prefix):
    """Coalesced ops reach the script as one argument list each, sent in slices (Lua's unpack has a limit)."""
    plan = rm.Plan()
    for i in range(1500):
        plan.zadd("listings:by_price", rm.listing_member(i), i + 0.5)
        plan.hset("listing:1:nights", {f"n{i}": str(i)})
    plan.zrem("listings:by_price", rm.listing_member(3))
    model.execute(plan)
    assert redis_client.zcard(f"{prefix}listings:by_price") == 1499
    assert redis_client.zscore(f"{prefix}listings:by_price", rm.listing_member(1499)) == 1499.5
    assert redis_client.hlen(f"{prefix}listing:1:nights") == 1500


@pytest.fixture
def own_redis(tmp_path):
    """A private redis-server: its command statistics count this test's commands alone."""
    import subprocess

    import redis

    from infra.local import services

    port = services.free_port()
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert services.wait_port("127.0.0.1", port, 10, server), "the private redis-server did not start"
        client = redis.Redis(port=port, decode_responses=True)
        yield client
        client.close()
    finally:
        server.terminate()
        server.wait(10)


def test_reconcile_visits_the_models_keys_only_however_many_other_keys_the_database_holds(change_log, sql,
                                                                                        own_redis):
    """Reconcile's orphan pass walks the registry of model keys the replicator keeps: 20,000 keys of another
    application in the same database (and the decision store's under the same prefix) add no Redis command.
    A SCAN MATCH of the prefix visited every key of the database (9.4 s with 3 million foreign keys)."""
    model = RedisReadModel(own_redis, "mine:")
    make_changes_on_every_table(sql)
    replication.reconcile(change_log, model)  # the full load (a first SCAN of the prefix registers what it finds)
    drain(change_log, model)
    replication.reconcile(change_log, model)  # forgets keys the drain deleted: the registry is exact from here

    def commands() -> dict:
        return {name: stats["calls"] for name, stats in own_redis.info("commandstats").items()}

    own_redis.config_resetstat()
    quiet = replication.reconcile(change_log, model)
    quiet_commands = commands()
    pipe = own_redis.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"other:{i}", "x")
    for i in range(500):
        pipe.set(f"mine:req:{i}", "x")
    pipe.execute()
    own_redis.config_resetstat()
    busy = replication.reconcile(change_log, model)

    assert commands() == quiet_commands
    assert busy["keys"] == quiet["keys"] > 0 and busy["repaired"] == quiet["repaired"] == 0


def test_a_failure_writing_a_batch_deletes_neither_it_nor_the_batch_read_behind_it(change_log, model, sql, settings,
                                                                                   redis_client, prefix):
    replication.ensure_loaded(change_log, model)
    drain(change_log, model)
    make_changes_on_every_table(sql)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM change_log ORDER BY id")
        ids = [row["id"] for row in cur.fetchall()]
    writes = []
    execute = model.execute

    def failing_second_write(plan):
        writes.append(len(plan.ops))
        if len(writes) == 2:
            raise ConnectionError("Redis went away")
        execute(plan)

    model.execute = failing_second_write
    with pytest.raises(ConnectionError):
        replication.drain(change_log, model, batch_size=4)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM change_log ORDER BY id")
        assert [row["id"] for row in cur.fetchall()] == ids[4:]  # only the first batch is gone
    model.execute = execute
    assert drain(change_log, model) == len(ids) - 4
    assert replication.reconcile(change_log, model)["repaired"] == 0


def test_reading_the_change_log_neither_waits_for_nor_returns_an_open_transactions_change(change_log, sql, settings):
    sql("UPDATE users SET name='Pending One' WHERE id=2")
    sql("UPDATE users SET name='Pending Two' WHERE id=3")
    open_tx = connect(settings)
    try:
        with open_tx.cursor() as cur:
            cur.execute("UPDATE users SET name='Uncommitted' WHERE id=4")
        committed = change_log.pending(10)
        assert [(c.entity, c.entity_id) for c in committed][-2:] == [("users", 2), ("users", 3)]
        assert [c.id for c in change_log.pending(10, [committed[-2].id])] == [c.id for c in committed[:-2]] + [
            committed[-1].id]
        change_log.acknowledge(committed)
        assert change_log.pending(10) == []
    finally:
        open_tx.commit()
        open_tx.close()
    assert [(c.entity, c.entity_id) for c in change_log.pending(10)] == [("users", 4)]
