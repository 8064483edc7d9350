"""Differential suite: each scenario runs twice with pymongo and the same code, once straight at
atlas-sim (MONGODB-AWS, as the driver in the function would) and once through mongo-pool's
socket, and the application's observable outcome must be the same both ways: documents stored,
the error's class, code and labels, and how many times a `with_transaction` callback ran.

atlas-sim is ours, so a scenario through mongo-pool alone would prove little where the two
shared a misunderstanding of the server. The straight run is the oracle; the server behaviour it
relies on is checked on its own in test_atlas_sim_server_behaviour.py (the scenarios live there).

Each side gets its own atlas-sim (same options, fresh state) so that a stepdown on one side
cannot touch the other. The duration of each side is printed for the record (`-s`), not
asserted: these machines are shared and noisy.
"""
import time

import pymongo
import pytest
from pymongo.write_concern import WriteConcern

from pool_fixtures import KEY_ID, SECRET, _stop, pool_factory, start_sim  # noqa: F401 (fixture)
from test_atlas_sim_server_behaviour import (
    error_outcome,
    scenario_commit_reply_lost,
    scenario_max_time_ms_expiry,
    scenario_with_transaction_interrupted_by_stepdown,
    wait_until,
)


@pytest.fixture
def sides(pool_factory, monkeypatch, tmp_path):
    """sides(*sim_args) -> {"straight": (sim, make_client), "through": (sim, make_client)}.

    Straight: pymongo with MONGODB-AWS (pymongo-auth-aws reads the key from the environment)
    at the atlas-sim URI. Through: pymongo with no credentials at mongo-pool's socket, in front
    of an atlas-sim started the same way.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    straights = []

    def make(*sim_args):
        straight = start_sim(tmp_path, "--topology", "replset", *sim_args)
        straights.append(straight)
        through = pool_factory(sim_args=sim_args)

        def straight_client(**kw):
            kw.setdefault("serverSelectionTimeoutMS", 20000)
            return pymongo.MongoClient(straight.uri, **kw)

        def through_client(**kw):
            kw.setdefault("serverSelectionTimeoutMS", 20000)
            return pymongo.MongoClient(through.socket_uri, **kw)

        return {"straight": (straight, straight_client), "through": (through.sim, through_client),
                "pool": through}
    yield make
    for sim in straights:
        _stop(sim.proc)


def both_ways(sides, scenario):
    outcomes = {}
    for side in ("straight", "through"):
        sim, make_client = sides[side]
        started = time.monotonic()
        outcomes[side] = scenario(sim, make_client)
        print(f"{scenario.__name__} {side}: {outcomes[side]} in {time.monotonic() - started:.2f} s")
    return outcomes


def auths(sim):
    return sim.status()["auth"]["received"]


def test_with_transaction_interrupted_by_a_stepdown(sides):
    out = both_ways(sides(), scenario_with_transaction_interrupted_by_stepdown)
    assert out["straight"] == out["through"] == {"callback_runs": 2, "stored": 1}, out


def test_a_commit_whose_reply_is_lost_is_stored_exactly_once(sides):
    out = both_ways(sides(), scenario_commit_reply_lost)
    assert out["straight"] == out["through"] == {"callback_runs": 1, "stored": 1}, out


def scenario_commit_during_no_primary(sim, make_client):
    """The primary goes away between the callback's write and the commit (a `/no-primary`
    window, which aborts the open transaction): the commit is retried until a primary is
    elected, fails there as NoSuchTransaction with TransientTransactionError, and
    with_transaction runs the callback again. Stored once."""
    runs = []
    with make_client() as c:
        coll = c.app.txn_no_primary
        coll.insert_one({"_id": "warm"})

        def callback(session):
            runs.append(1)
            coll.insert_one({"_id": "once"}, session=session)
            if len(runs) == 1:
                sim.post("/no-primary?ms=1500")

        with c.start_session() as s:
            s.with_transaction(callback)
        stored = coll.count_documents({"_id": "once"})
    return {"callback_runs": len(runs), "stored": stored}


def test_a_commit_during_a_window_with_no_primary(sides):
    out = both_ways(sides(), scenario_commit_during_no_primary)
    assert out["straight"] == out["through"] == {"callback_runs": 2, "stored": 1}, out


def test_max_time_ms_expiry_reauthenticates_nothing_and_clears_no_pool(sides):
    s = sides()
    through_sim, make_client = s["through"]
    # Warm the pool first, so the expiry is the only thing that could cost an authentication.
    with make_client() as c:
        c.app.slow.insert_one({"_id": 1})
    before = auths(through_sim)
    out = both_ways(s, scenario_max_time_ms_expiry)
    assert out["straight"] == out["through"] == {
        "error": "ExecutionTimeout", "code": 50, "labels": []}, out
    with make_client() as c:
        assert c.app.slow.find_one({"_id": 1}) == {"_id": 1}
        stats = c.admin.command("mongoPoolStats")
    assert auths(through_sim) == before, "the expiry cost a new authentication"
    cleared = [p for p in stats["pools"] if p["generation"] != 0]
    assert not cleared, f"a pool was cleared: {stats['pools']}"
    assert all(p["state"] != "Unknown" for p in stats["pools"]), stats["pools"]


def scenario_logout_then_find(sim, make_client):
    """logout, then a find on the same client."""
    with make_client(maxPoolSize=1) as c:
        c.app.lo.insert_one({"_id": 1})
        logout = error_outcome(lambda: c.admin.command("logout"))
        after = error_outcome(lambda: c.app.lo.find_one({}))
    return {"logout": logout, "after": after}


def test_logout(sides):
    """The one scenario whose outcomes differ by design, stated here: straight, logout ends the
    connection's authentication and the next command fails with Unauthorized (13); through
    mongo-pool the function's connection has no user of its own (mongo-pool authenticates
    upstream), so logout is answered locally with ok, as mongod answers a connection with no
    user, and no pooled connection is ever logged out for the other clients."""
    s = sides()
    out = both_ways(s, scenario_logout_then_find)
    assert out["straight"] == {"logout": {"error": None},
                               "after": {"error": "OperationFailure", "code": 13, "labels": []}}, out
    assert out["through"] == {"logout": {"error": None}, "after": {"error": None}}, out
    through_sim = s["through"][0]
    assert sum(m["commands"].get("logout", 0) for m in through_sim.status()["members"].values()) == 0


def scenario_w0_ordering(sim, make_client):
    """Unacknowledged writes from one connection reach the server in the order sent: an
    insert, then updates of the same document, then an acknowledged read sees the last."""
    with make_client(maxPoolSize=1) as c:
        acked = c.app.w0
        acked.insert_one({"_id": "warm"})
        unacked = acked.with_options(write_concern=WriteConcern(w=0))
        unacked.insert_one({"_id": "doc", "n": 0})
        for n in range(1, 200):
            unacked.update_one({"_id": "doc"}, {"$set": {"n": n}})
        final = wait_until("the last unacknowledged update",
                           lambda: (acked.find_one({"_id": "doc"}) or {}).get("n") == 199)
    return {"last_applied": final}


def test_unacknowledged_writes_keep_their_order(sides):
    out = both_ways(sides(), scenario_w0_ordering)
    assert out["straight"] == out["through"] == {"last_applied": True}, out


def scenario_kill_cursors_on_two_members(sim, make_client):
    """Two cursors open on two different members (primary and a secondary), both closed early
    by the driver: every cursor is killed on the member that owns it, none is left open."""
    from pymongo.read_preferences import Secondary
    with make_client() as c:
        coll = c.app.kc
        coll.insert_many([{"_id": i} for i in range(50)])
        on_primary = coll.find({}, batch_size=5)
        next(on_primary)
        on_secondary = coll.with_options(read_preference=Secondary()).find({}, batch_size=5)
        next(on_secondary)
        on_primary.close()
        on_secondary.close()
        st = wait_until("both cursors killed", lambda: (
            lambda s: s if sum(m["commands"].get("killCursors", 0) for m in s["members"].values()) >= 2
            else None)(sim.status()))
    owners = sorted(m for m, v in st["members"].items() if v["commands"].get("killCursors", 0))
    open_cursors = sum(v["cursors"] for v in st["members"].values())
    return {"members_killing": len(owners), "open_cursors": open_cursors}


def test_kill_cursors_spanning_two_members(sides):
    out = both_ways(sides(), scenario_kill_cursors_on_two_members)
    assert out["straight"] == out["through"] == {"members_killing": 2, "open_cursors": 0}, out


def test_one_kill_cursors_naming_cursors_of_two_members_kills_both(pool_factory):
    """Through mongo-pool only: an application's own killCursors naming a cursor on the
    primary and one on a secondary. mongo-pool poses as a mongos, which kills every cursor it
    routed; straight, the command reaches one member, which cannot kill the other's cursor, so
    there is no straight counterpart to compare with."""
    from bson.int64 import Int64
    from pymongo.read_preferences import Secondary
    pool = pool_factory()
    with pymongo.MongoClient(pool.socket_uri, serverSelectionTimeoutMS=20000) as c:
        coll = c.app.kc_split
        coll.insert_many([{"_id": i} for i in range(20)])
        on_primary = coll.find({}, batch_size=2)
        next(on_primary)
        on_secondary = coll.with_options(read_preference=Secondary()).find({}, batch_size=2)
        next(on_secondary)
        ids = [Int64(on_primary.cursor_id), Int64(on_secondary.cursor_id)]
        st = pool.sim.status()
        owners = [m for m, v in st["members"].items() if v["cursors"]]
        assert len(owners) == 2, f"the two cursors are on two members: {st['members']}"
        reply = c.app.command("killCursors", "kc_split", cursors=ids + [Int64(4242)])
        assert sorted(reply["cursorsKilled"]) == sorted(ids), reply
        assert reply["cursorsNotFound"] == [4242], reply
        assert sum(v["cursors"] for v in pool.sim.status()["members"].values()) == 0
        assert c.admin.command("mongoPoolStats")["pinned"]["cursors"] == 0
