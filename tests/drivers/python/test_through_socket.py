"""pymongo (current release) through mongo-pool's Unix socket, in front of atlas-sim.

The connection strings carry no credentials: mongo-pool authenticates upstream (MONGODB-AWS)
and poses as a mongos on the socket. atlas-sim's `/status` (command counts per member, open
cursors, authentications) proves where each request went. Issue 5, "Must show".
"""
import contextlib
import os
import threading
import time

import pymongo
import pytest
from bson import Binary
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

from pool_fixtures import pool, pool_factory  # noqa: F401 (pytest fixtures)

TOPOLOGIES = ["replset", "sharded"]

# Commands mongo-pool sends by itself (handshakes, authentication, topology checks, pings):
# left out when a test looks at where the driver's commands went.
BACKGROUND = {"hello", "isMaster", "ismaster", "ping", "saslStart", "saslContinue", "buildInfo",
              "endSessions"}


@contextlib.contextmanager
def connect(pool, **options):
    """A MongoClient on the socket: no credentials, every wait bounded."""
    kw = dict(serverSelectionTimeoutMS=10000, connectTimeoutMS=5000, socketTimeoutMS=60000,
              waitQueueTimeoutMS=10000, appname="pool-drivers-python")
    kw.update(options)
    client = pymongo.MongoClient(pool.socket_uri, **kw)
    try:
        yield client
    finally:
        client.close()


def wait_for(predicate, what, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def delta(before, after):
    """{member: {command: count}} of the driver's commands between two /status snapshots."""
    out = {}
    for member, now in after["members"].items():
        then = before["members"].get(member, {}).get("commands", {})
        changed = {name: n - then.get(name, 0) for name, n in now.get("commands", {}).items()
                   if name not in BACKGROUND and n - then.get(name, 0) > 0}
        if changed:
            out[member] = changed
    return out


def members_with(d, command):
    return sorted(m for m, c in d.items() if c.get(command, 0) > 0)


def stats(client):
    return client.admin.command("mongoPoolStats")


# --- the core, on a replica set and on a sharded cluster -------------------------------------


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_crud(pool_factory, topology):
    pool = pool_factory(topology)
    with connect(pool) as c:
        people = c.app.people
        r = people.insert_one({"_id": "ada", "name": "Ada", "born": 1815})
        assert r.acknowledged and r.inserted_id == "ada"
        assert c.topology_description.topology_type_name == "Sharded"  # mongo-pool poses as a mongos
        r = people.insert_many([{"_id": f"p{i:02}", "n": i} for i in range(50)])
        assert len(r.inserted_ids) == 50

        assert people.find_one({"_id": "ada"}) == {"_id": "ada", "name": "Ada", "born": 1815}
        assert people.count_documents({}) == 51
        assert people.count_documents({"n": {"$lt": 10}}) == 10

        r = people.update_one({"_id": "ada"}, {"$set": {"field": "maths"}, "$inc": {"born": 0}})
        assert (r.matched_count, r.modified_count) == (1, 1)
        r = people.update_many({"n": {"$lt": 10}}, {"$set": {"small": True}})
        assert (r.matched_count, r.modified_count) == (10, 10)
        r = people.replace_one({"_id": "p49"}, {"n": 49, "replaced": True})
        assert r.modified_count == 1
        r = people.update_one({"_id": "new"}, {"$set": {"n": 100}}, upsert=True)
        assert r.upserted_id == "new"
        doc = people.find_one_and_update({"_id": "p00"}, {"$inc": {"n": 1000}},
                                         return_document=pymongo.ReturnDocument.AFTER)
        assert doc["n"] == 1000

        assert people.find_one({"_id": "p49"}) == {"_id": "p49", "n": 49, "replaced": True}
        assert sorted(people.distinct("small")) == [True]
        total = list(people.aggregate([{"$match": {"n": {"$lt": 10}}},
                                       {"$group": {"_id": None, "sum": {"$sum": "$n"}}}]))
        assert total == [{"_id": None, "sum": sum(range(1, 10))}]
        names = [d["_id"] for d in people.find({"n": {"$gte": 40, "$lt": 50}}, {"_id": 1}).sort("_id", 1)]
        assert names == [f"p{i}" for i in range(40, 50)]

        assert people.delete_one({"_id": "ada"}).deleted_count == 1
        assert people.delete_many({"small": True}).deleted_count == 10
        assert people.count_documents({}) == 51 - 1 - 10 + 1
        assert "people" in c.app.list_collection_names()
        people.drop()
        assert people.count_documents({}) == 0

    st = pool.sim.status()
    assert st["auth"]["failed"] == 0
    served = {m for m, cmds in pool.sim.commands(st).items() if cmds.get("insert")}
    assert served, "no insert reached atlas-sim"
    if topology == "replset":
        assert served == {st["primary"]}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cursor_batch_size_7_while_other_connections_query(pool_factory, topology):
    pool = pool_factory(topology)
    with connect(pool) as c:
        c.app.items.insert_many([{"_id": i, "v": i % 13} for i in range(1000)])
        c.app.other.insert_many([{"_id": i, "k": i % 5} for i in range(100)])
    before = pool.sim.status()

    stop = threading.Event()
    errors = []
    done = [0] * 6

    def query_loop(k, client):
        try:
            while not stop.is_set():
                doc = client.app.other.find_one({"_id": (k * 17 + done[k]) % 100})
                assert doc is not None
                assert client.app.other.count_documents({"k": k % 5}) == 20
                done[k] += 1
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    with contextlib.ExitStack() as stack:
        shared = stack.enter_context(connect(pool, maxPoolSize=8))
        # Four workers on clients of their own (their own downstream connections), two on the
        # cursor's client (so its getMores may travel over different downstream connections).
        clients = [stack.enter_context(connect(pool, maxPoolSize=1)) for _ in range(4)] + [shared, shared]
        threads = [threading.Thread(target=query_loop, args=(k, cl), daemon=True)
                   for k, cl in enumerate(clients)]
        for t in threads:
            t.start()
        wait_for(lambda: all(done) or errors, "every query loop to get going")

        at_start = sum(done)
        ids = []
        values = []
        for doc in shared.app.items.find({}, batch_size=7).sort("_id", 1):
            ids.append(doc["_id"])
            values.append(doc["v"])
        at_end = sum(done)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a query loop did not stop"

    assert not errors, errors
    assert ids == list(range(1000))
    assert values == [i % 13 for i in range(1000)]
    assert at_end > at_start, "the other connections ran no query while the cursor was open"

    d = delta(before, pool.sim.status())
    get_more = {m: c["getMore"] for m, c in d.items() if c.get("getMore")}
    assert len(get_more) == 1, f"getMores spread over members: {get_more}"
    (owner, n), = get_more.items()
    assert n >= (1000 - 7 + 6) // 7, f"only {n} getMores for 1,000 documents in batches of 7"
    assert d[owner].get("find", 0) >= 1


@pytest.mark.parametrize("topology,read_preference", [
    ("replset", "primary"), ("replset", "secondary"), ("sharded", "primary")])
def test_closing_a_cursor_early_kills_it_on_the_member_that_opened_it(pool_factory, topology,
                                                                     read_preference):
    pool = pool_factory(topology)
    with connect(pool) as c:
        c.app.items.insert_many([{"_id": i} for i in range(1000)])
    sim = pool.sim
    with connect(pool, readPreference=read_preference) as c:
        before = sim.status()
        cursor = c.app.items.find({}, batch_size=7)
        first = [next(cursor)["_id"] for _ in range(10)]  # the find and one getMore
        assert len(set(first)) == 10
        opened = sim.status()
        finds = members_with(delta(before, opened), "find")
        assert len(finds) == 1, f"find on {finds}"
        owner = finds[0]
        assert opened["members"][owner]["cursors"] == 1
        if read_preference == "secondary":
            assert owner != opened["primary"]

        cursor.close()
        after = wait_for(lambda: (lambda st: st if any(
            members_with(delta(before, st), "killCursors")) else None)(sim.status()),
            "atlas-sim to count a killCursors")
        d = delta(before, after)
        assert members_with(d, "killCursors") == [owner], d
        assert after["members"][owner]["cursors"] == 0
        assert all(m["cursors"] == 0 for m in after["members"].values())
        assert stats(c)["pinned"]["cursors"] == 0
        # The connection and the collection are still fine.
        assert c.app.items.count_documents({}) == 1000


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_transactions_committed_and_aborted(pool_factory, topology):
    pool = pool_factory(topology)
    sim = pool.sim
    with connect(pool) as c:
        accounts = c.bank.accounts
        accounts.insert_many([{"_id": "alice", "balance": 100}, {"_id": "bob", "balance": 0}])
        c.bank.create_collection("log")

        def transfer(session):
            accounts.update_one({"_id": "alice"}, {"$inc": {"balance": -30}}, session=session)
            accounts.update_one({"_id": "bob"}, {"$inc": {"balance": 30}}, session=session)
            c.bank.log.insert_one({"_id": "t1", "amount": 30}, session=session)
            assert accounts.find_one({"_id": "bob"}, session=session)["balance"] == 30
            return "committed"

        before = sim.status()
        with c.start_session() as s:
            assert s.with_transaction(transfer) == "committed"
        committed = sim.status()
        d = delta(before, committed)
        assert len(d) == 1, f"one transaction ran on several members: {d}"
        (member, cmds), = d.items()
        assert cmds.get("commitTransaction", 0) >= 1 and cmds.get("update") == 2, cmds
        if topology == "replset":
            assert member == committed["primary"]
        assert accounts.find_one({"_id": "alice"})["balance"] == 70
        assert accounts.find_one({"_id": "bob"})["balance"] == 30
        assert c.bank.log.find_one({"_id": "t1"}) == {"_id": "t1", "amount": 30}

        class Abandon(Exception):
            pass

        def failing(session):
            accounts.update_one({"_id": "alice"}, {"$inc": {"balance": -1000}}, session=session)
            c.bank.log.insert_one({"_id": "t2", "amount": 1000}, session=session)
            assert accounts.find_one({"_id": "alice"}, session=session)["balance"] == -930
            raise Abandon()

        mid = sim.status()
        with c.start_session() as s:
            with pytest.raises(Abandon):
                s.with_transaction(failing)
        aborted = sim.status()
        d = delta(mid, aborted)
        assert len(d) == 1, f"one transaction ran on several members: {d}"
        (member, cmds), = d.items()
        assert cmds.get("abortTransaction", 0) >= 1 and "commitTransaction" not in cmds, cmds
        assert accounts.find_one({"_id": "alice"})["balance"] == 70
        assert c.bank.log.find_one({"_id": "t2"}) is None

        # An explicit abort, too.
        with c.start_session() as s:
            s.start_transaction()
            c.bank.log.insert_one({"_id": "t3"}, session=s)
            s.abort_transaction()
        assert c.bank.log.find_one({"_id": "t3"}) is None
        assert c.bank.log.count_documents({}) == 1
        assert stats(c)["pinned"]["transactions"] == 0


# --- the rest, on a replica set ----------------------------------------------------------------


def test_insert_many_of_20000_documents(pool):
    with connect(pool) as c:
        coll = c.app.bulk
        docs = [{"_id": i, "name": f"doc-{i}", "pad": "x" * 64} for i in range(20000)]
        r = coll.insert_many(docs)
        assert r.acknowledged and len(r.inserted_ids) == 20000
        assert coll.count_documents({}) == 20000
        ids = [d["_id"] for d in coll.find({}, {"_id": 1}, batch_size=5000).sort("_id", 1)]
        assert ids == list(range(20000))
        assert coll.find_one({"_id": 19999}) == {"_id": 19999, "name": "doc-19999", "pad": "x" * 64}


def test_unique_index_violation_surfaces_as_11000(pool):
    with connect(pool) as c:
        users = c.app.users
        users.create_index("email", unique=True)
        users.insert_one({"_id": 1, "email": "a@example.com"})

        with pytest.raises(DuplicateKeyError) as err:
            users.insert_one({"_id": 2, "email": "a@example.com"})
        assert err.value.code == 11000

        with pytest.raises(BulkWriteError) as err:
            users.insert_many([{"_id": 3, "email": "b@example.com"}, {"_id": 4, "email": "a@example.com"}])
        assert err.value.code == 65  # BulkWriteError's own code; the write error is 11000
        write_errors = err.value.details["writeErrors"]
        assert [e["code"] for e in write_errors] == [11000] and write_errors[0]["index"] == 1
        assert err.value.details["nInserted"] == 1

        with pytest.raises(DuplicateKeyError) as err:
            users.update_one({"_id": 3}, {"$set": {"email": "a@example.com"}})
        assert err.value.code == 11000

        with pytest.raises(DuplicateKeyError) as err:  # the _id index
            users.insert_one({"_id": 1, "email": "c@example.com"})
        assert err.value.code == 11000

        assert sorted(d["_id"] for d in users.find()) == [1, 3]


def test_unacknowledged_writes(pool):
    # One downstream connection: a reply to a moreToCome request would be read as the reply to
    # the next command and break it.
    with connect(pool, maxPoolSize=1) as c:
        fire = c.app.get_collection("fire", write_concern=WriteConcern(w=0))
        r = fire.insert_one({"_id": 1})
        assert not r.acknowledged
        fire.insert_many([{"_id": i} for i in range(2, 101)])
        fire.update_one({"_id": 1}, {"$set": {"seen": True}})
        fire.delete_one({"_id": 100})
        assert c.admin.command("ping")["ok"] == 1

        acked = c.app.fire
        wait_for(lambda: acked.count_documents({}) == 99
                 and (acked.find_one({"_id": 1}) or {}).get("seen") is True,
                 "the unacknowledged writes to appear")
        assert sorted(d["_id"] for d in acked.find({}, {"_id": 1})) == list(range(1, 100))

    with connect(pool, w=0) as c:  # w=0 from the connection string's options
        assert c.write_concern.acknowledged is False
        c.app.fire2.insert_one({"_id": "x"})
        wait_for(lambda: c.app.get_collection("fire2", write_concern=WriteConcern(w=1))
                 .find_one({"_id": "x"}), "the w=0 insert to appear")


def test_secondary_reads_are_served_by_a_secondary(pool):
    sim = pool.sim
    with connect(pool) as c:
        c.app.reads.insert_many([{"_id": i} for i in range(100)])
    before = sim.status()
    with connect(pool, readPreference="secondary") as c:
        for i in range(20):
            assert c.app.reads.find_one({"_id": i}) == {"_id": i}
        assert len(list(c.app.reads.find({}, batch_size=10))) == 100
        assert c.app.reads.count_documents({}) == 100
    after = sim.status()
    primary = after["primary"]
    assert primary == before["primary"]
    d = delta(before, after)
    for command in ("find", "getMore", "aggregate"):
        served = members_with(d, command)
        assert served and primary not in served, f"{command} served by {served}, primary {primary}"
        assert all(after["members"][m]["state"] == "SECONDARY" for m in served)
    assert sum(d[m].get("find", 0) for m in d) >= 21


def test_200_retryable_writes_across_a_stepdown(pool):
    sim = pool.sim
    old_primary = sim.status()["primary"]
    halfway = threading.Event()
    stepdown = {}

    def step_down():
        if halfway.wait(timeout=60):
            try:
                stepdown["reply"] = sim.post("/stepdown")
            except Exception as e:  # noqa: BLE001 (asserted below)
                stepdown["error"] = repr(e)

    stepper = threading.Thread(target=step_down, daemon=True)
    stepper.start()
    acked, failed = [], []
    with connect(pool, retryWrites=True) as c:
        coll = c.app.retry
        try:
            for i in range(200):
                if i == 100:
                    halfway.set()
                try:
                    r = coll.insert_one({"_id": i, "seq": i})
                    assert r.acknowledged
                    acked.append(i)
                except PyMongoError as e:
                    failed.append((i, repr(e)))
                if i >= 100:
                    time.sleep(0.005)  # keep writing while the election happens
        finally:
            halfway.set()
            stepper.join(timeout=10)
        assert "reply" in stepdown, stepdown
        new_primary = stepdown["reply"]["primary"]
        assert new_primary and new_primary != old_primary

        assert len(failed) <= 1, failed
        stored = [d["_id"] for d in coll.find({}, {"_id": 1})]
        assert len(stored) == len(set(stored)) == coll.count_documents({})
        failed_ids = {i for i, _ in failed}
        assert set(acked) <= set(stored) <= set(acked) | failed_ids
        assert len(acked) + len(failed) == 200

    st = sim.status()
    assert st["primary"] == new_primary
    inserts = pool.sim.counts("insert", st)
    assert inserts[old_primary] >= 100 and inserts[new_primary] >= 1, inserts


def test_load_balanced_mode(pool):
    with pymongo.MongoClient(pool.uri(loadBalanced="true"), serverSelectionTimeoutMS=10000,
                             connectTimeoutMS=5000, socketTimeoutMS=60000) as c:
        coll = c.app.lb
        coll.insert_many([{"_id": i, "n": i} for i in range(100)])
        assert c.topology_description.topology_type_name == "LoadBalanced"
        assert coll.find_one({"_id": 7}) == {"_id": 7, "n": 7}
        assert coll.update_many({"n": {"$gte": 50}}, {"$set": {"big": True}}).modified_count == 50
        assert coll.delete_one({"_id": 0}).deleted_count == 1
        assert [d["_id"] for d in coll.find({}, batch_size=7).sort("_id", 1)] == list(range(1, 100))
        with c.start_session() as s:
            s.with_transaction(lambda s: coll.insert_one({"_id": "tx"}, session=s))
        assert coll.count_documents({}) == 100
        assert c.admin.command("mongoPoolStats")["ok"] == 1


def test_a_15_mib_document_round_trip(pool):
    blob = os.urandom(15 * 1024 * 1024)
    with connect(pool) as c:
        big = c.app.big
        big.insert_one({"_id": "big", "blob": Binary(blob)})
        doc = big.find_one({"_id": "big"})
        assert bytes(doc["blob"]) == blob
        text = "m" * (15 * 1024 * 1024)
        big.replace_one({"_id": "big"}, {"text": text})
        assert big.find_one({"_id": "big"})["text"] == text


def test_mongo_pool_stats(pool):
    sim = pool.sim
    with connect(pool) as c:
        c.app.s.insert_one({"_id": 1})
        assert c.app.s.find_one() == {"_id": 1}
        st = c.admin.command("mongoPoolStats")
        assert c.app.command("mongoPoolStats")["ok"] == 1  # any database
        assert st["ok"] == 1
        pools = st["pools"]
        assert {p["address"] for p in pools} == set(sim.members)
        assert sorted(p["state"] for p in pools) == ["Primary", "Secondary", "Secondary"]
        assert all(p["total"] >= p["idle"] >= 0 and p["inUse"] >= 0 for p in pools)
        auth = st["authentications"]
        assert auth["ok"] >= 1 and auth["failed"] == 0
        assert auth["ok"] == st["upstreamConnections"]["created"]
        assert st["downstreamConnections"]["current"] >= 1
        assert st["downstreamConnections"]["total"] >= 1
        assert st["forwarded"] >= 2 and st["requests"] >= st["forwarded"]
        for key in ("checkouts", "checkoutWaits", "uptimeMillis"):
            assert key in st

        # Every upstream connection authenticated once (no auth per request), as atlas-sim saw.
        def settled():
            now = c.admin.command("mongoPoolStats")
            seen = sim.status()["auth"]["successful"]
            return now if now["authentications"]["ok"] == seen == now["upstreamConnections"]["created"] else None
        wait_for(settled, "mongoPoolStats and atlas-sim to agree on authentications")
    commands = sim.commands()
    assert not any("mongoPoolStats" in cmds for cmds in commands.values()), "mongoPoolStats was forwarded"


def test_credentials_in_the_connection_string_get_a_clear_error(pool):
    uri = pool.socket_uri.replace("mongodb://", "mongodb://someone:secret@") + "/?authSource=admin"
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
                             socketTimeoutMS=10000) as c:
        with pytest.raises(OperationFailure) as err:
            c.admin.command("ping")
    assert "remove credentials from the connection string" in str(err.value)


def test_an_unacknowledged_write_mongo_pool_cannot_deliver_gets_no_reply(pool_factory):
    # mongo-pool gives up on finding a primary after 300 ms (its own serverSelectionTimeoutMS).
    pool = pool_factory(uri_options={"serverSelectionTimeoutMS": "300"})
    sim = pool.sim
    with connect(pool, maxPoolSize=1) as c:  # one downstream connection, as above
        c.app.fire.insert_one({"_id": 0})
        sim.post("/no-primary?ms=2000")
        # An acknowledged write meets "not writable primary" (mongo-pool now knows there is no
        # primary), its retry finds none within 300 ms.
        with pytest.raises(PyMongoError):
            c.app.fire.insert_one({"_id": "lost"})
        fire = c.app.get_collection("fire", write_concern=WriteConcern(w=0))
        assert not fire.insert_one({"_id": 1}).acknowledged  # lost: no primary for mongo-pool
        # At once (pymongo discards a connection with unread data after 1 s idle), on the same
        # connection: this command gets its own reply, not a stray one to the moreToCome request.
        st = c.admin.command("mongoPoolStats")
        assert st["ok"] == 1 and st["proxyErrors"] >= 1
        wait_for(lambda: sim.status()["primary"], "atlas-sim to elect a primary again")
        assert c.admin.command("ping")["ok"] == 1
        c.app.fire.insert_one({"_id": 2})
        assert sorted(d["_id"] for d in c.app.fire.find({}, {"_id": 1})) == [0, 2]
