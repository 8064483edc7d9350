"""pymongo straight at atlas-sim where atlas-sim behaves as mongod does for issue 15.

Each scenario is a function of a started atlas-sim and a client factory (`make_client(**kw)`
returns a MongoClient), returning what the application observed: documents stored, the error's
code and labels, how many times a callback ran. Here the factory connects straight to
atlas-sim; the differential suite runs the same scenarios through mongo-pool's socket and
compares the outcomes.
"""
import time

import pymongo
import pytest
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from pymongo.read_preferences import Secondary, SecondaryPreferred

from conftest import KEY_ID, SECRET

PRINCIPAL = f"{KEY_ID}:{SECRET}"
BOUND_S = 20  # every wait in these tests ends within this


def direct_factory(sim):
    def make_client(**kw):
        kw.setdefault("serverSelectionTimeoutMS", 10000)
        return pymongo.MongoClient(sim.uri, **kw)
    return make_client


def wait_until(what, predicate):
    deadline = time.monotonic() + BOUND_S
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def error_outcome(run):
    """What the application saw from `run()`: no error, or the error's class, code and labels."""
    try:
        run()
    except PyMongoError as e:
        return {"error": type(e).__name__, "code": getattr(e, "code", None),
                "labels": sorted(getattr(e, "_error_labels", ()))}
    return {"error": None}


def fail_point_off(sim):
    sim.post("/failpoint", {"configureFailPoint": "failCommand", "mode": "off"})


# --- scenarios ----------------------------------------------------------------------------

def scenario_with_transaction_interrupted_by_stepdown(sim, make_client):
    """A stepdown between the callback's write and the commit: the open transaction is aborted,
    the commit fails with TransientTransactionError, and with_transaction runs the callback
    again. The document is stored exactly once."""
    runs = []
    with make_client() as c:
        coll = c.app.txn_stepdown
        coll.insert_one({"_id": "warm"})

        def callback(session):
            runs.append(1)
            coll.insert_one({"_id": "once"}, session=session)
            if len(runs) == 1:
                sim.post("/stepdown")

        with c.start_session() as s:
            s.with_transaction(callback)
        stored = coll.count_documents({"_id": "once"})
    return {"callback_runs": len(runs), "stored": stored}


def scenario_commit_reply_lost(sim, make_client):
    """The commit applies but its reply is lost (closeConnectionAfterApply): the driver retries
    the commit, the server answers ok for the committed transaction, and the callback ran
    once."""
    runs = []
    with make_client() as c:
        coll = c.app.txn_lost_reply
        coll.insert_one({"_id": "warm"})
        sim.post("/failpoint", {
            "configureFailPoint": "failCommand", "mode": {"times": 1},
            "data": {"failCommands": ["commitTransaction"], "closeConnectionAfterApply": True},
        })

        def callback(session):
            runs.append(1)
            coll.insert_one({"_id": "once"}, session=session)

        with c.start_session() as s:
            s.with_transaction(callback)
        stored = coll.count_documents({"_id": "once"})
    return {"callback_runs": len(runs), "stored": stored}


def scenario_find_cut_off_by_socket_timeout(sim, make_client):
    """A find blocked far longer than socketTimeoutMS: the driver gives up and closes the
    connection (after its one retry), and the member kills every find it was running."""
    sim.post("/failpoint", {
        "configureFailPoint": "failCommand", "mode": "alwaysOn",
        # No appName: through a proxy the server sees the proxy's connections, not the app's.
        "data": {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 600000},
    })
    try:
        with make_client(socketTimeoutMS=300) as c:
            seen = error_outcome(lambda: c.app.cut.find_one({}))
    finally:
        fail_point_off(sim)

    def running_finds(st):
        return [r for m in st["members"].values() for r in m["operations"]["running"]
                if r["command"] == "find"]

    def settled():
        st = sim.status()
        return None if running_finds(st) else st
    st = wait_until("no find running", settled)
    killed = sum(m["operations"]["killed_by_command"].get("find", 0) for m in st["members"].values())
    return {"error": seen["error"], "finds_running": len(running_finds(st)), "finds_killed": killed}


def scenario_max_time_ms_expiry(sim, make_client):
    """A find blocked longer than its maxTimeMS fails with MaxTimeMSExpired (50)."""
    sim.post("/failpoint", {
        "configureFailPoint": "failCommand", "mode": {"times": 1},
        "data": {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 600000},
    })
    try:
        with make_client() as c:
            return error_outcome(lambda: c.app.slow.find_one({}, max_time_ms=200))
    finally:
        fail_point_off(sim)


def scenario_change_stream_across_stepdown_and_drop(sim, make_client):
    """A change stream sees every insert across a stepdown and a /drop-connections."""
    seen = []
    # After the dropped connections the driver finds the members again at its next heartbeat
    # (10 s by default); a short one keeps the scenario well inside its bounds.
    with make_client(heartbeatFrequencyMS=500) as c:
        coll = c.app.stream
        with coll.watch(max_await_time_ms=200) as stream:
            def next_event():
                return wait_until("a change event", lambda: stream.try_next())

            coll.insert_one({"_id": 1})
            seen.append(next_event()["documentKey"]["_id"])
            sim.post("/stepdown")
            coll.insert_one({"_id": 2})
            seen.append(next_event()["documentKey"]["_id"])
            sim.post("/drop-connections")
            coll.insert_one({"_id": 3})
            seen.append(next_event()["documentKey"]["_id"])
    return {"seen": seen}


def scenario_logout(sim, make_client):
    """logout on a connection: the next command on it needs authentication again."""
    with make_client(maxPoolSize=1) as c:
        c.app.lo.find_one({})
        c.admin.command("logout")
        return error_outcome(lambda: c.app.lo.find_one({}))


# --- straight at atlas-sim ----------------------------------------------------------------

def test_with_transaction_interrupted_by_a_stepdown_runs_again_and_stores_once(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    outcome = scenario_with_transaction_interrupted_by_stepdown(sim, direct_factory(sim))
    assert outcome == {"callback_runs": 2, "stored": 1}


def test_a_commit_whose_reply_is_lost_is_stored_exactly_once(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    outcome = scenario_commit_reply_lost(sim, direct_factory(sim))
    assert outcome == {"callback_runs": 1, "stored": 1}


def test_a_find_cut_off_by_socket_timeout_leaves_nothing_running(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    outcome = scenario_find_cut_off_by_socket_timeout(sim, direct_factory(sim))
    assert outcome["error"] == "NetworkTimeout"
    assert outcome["finds_running"] == 0
    assert outcome["finds_killed"] >= 1


def test_max_time_ms_expiry_is_code_50(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    assert scenario_max_time_ms_expiry(sim, direct_factory(sim)) == {
        "error": "ExecutionTimeout", "code": 50, "labels": []}


def test_a_change_stream_loses_no_event_across_a_stepdown_and_dropped_connections(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    assert scenario_change_stream_across_stepdown_and_drop(sim, direct_factory(sim)) == {"seen": [1, 2, 3]}


def test_a_change_stream_resumes_after_a_token(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    with direct_factory(sim)() as c:
        coll = c.app.resume
        with coll.watch(max_await_time_ms=200, full_document="updateLookup") as stream:
            coll.insert_one({"_id": 1, "v": 1})
            coll.update_one({"_id": 1}, {"$set": {"v": 2}})
            coll.delete_one({"_id": 1})
            first = wait_until("the insert", stream.try_next)
            assert first["operationType"] == "insert"
            assert first["fullDocument"] == {"_id": 1, "v": 1}
            token = stream.resume_token
        with coll.watch(max_await_time_ms=200, resume_after=token, full_document="updateLookup") as resumed:
            update = wait_until("the update", resumed.try_next)
            delete = wait_until("the delete", resumed.try_next)
        assert update["operationType"] == "update"
        assert update["updateDescription"]["updatedFields"] == {"v": 2}
        # updateLookup reads the document as it is now: deleted since, so null.
        assert update["fullDocument"] is None
        assert delete["operationType"] == "delete"
        assert delete["documentKey"] == {"_id": 1}
        with coll.watch(max_await_time_ms=200, start_after=first["_id"]) as started:
            again = wait_until("the update again", started.try_next)
        assert again["_id"] == update["_id"]
        assert "fullDocument" not in again, "without updateLookup an update has no fullDocument"


def test_logout_logs_the_connection_out(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", PRINCIPAL)
    assert scenario_logout(sim, direct_factory(sim)) == {
        "error": "OperationFailure", "code": 13, "labels": []}


def test_member_tags_and_secondary_lag_drive_server_selection(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory(
        "--principal", PRINCIPAL,
        "--member-tags", "nodeType:ELECTABLE,region:US_EAST_1",
        "--member-tags", "nodeType:ELECTABLE,region:US_EAST_1",
        "--member-tags", "nodeType:ANALYTICS,region:US_EAST_1",
        "--secondary-lag-ms", "300000",
    )
    analytics = sim.start["members"][2]
    with direct_factory(sim)() as c:
        c.app.tagged.insert_one({"_id": 1})
        wait_until("all members discovered",
                   lambda: len(c.topology_description.known_servers) == 3)
        tags = {f"{h}:{p}": sd.tags for (h, p), sd in c.topology_description.server_descriptions().items()}
        assert tags[analytics] == {"nodeType": "ANALYTICS", "region": "US_EAST_1"}

        before = sim.status()["members"][analytics]["commands"].get("find", 0)
        doc = c.app.get_collection("tagged", read_preference=Secondary(tag_sets=[{"nodeType": "ANALYTICS"}])).find_one({})
        assert doc == {"_id": 1}, "the data does not lag"
        assert sim.status()["members"][analytics]["commands"].get("find", 0) == before + 1

        # Secondaries 300 s stale: maxStalenessSeconds 90 leaves only the primary.
        primary = sim.status()["primary"]
        before = sim.status()["members"][primary]["commands"].get("find", 0)
        fresh = c.app.get_collection("tagged", read_preference=SecondaryPreferred(max_staleness=90))
        assert fresh.find_one({}) == {"_id": 1}
        assert sim.status()["members"][primary]["commands"].get("find", 0) == before + 1
    with direct_factory(sim)(serverSelectionTimeoutMS=1500) as c:
        # Staleness is measured against the primary once it is known (max-staleness spec); with
        # none known the secondaries, equally late, would look fresh to each other.
        assert c.app.tagged.find_one({}) == {"_id": 1}
        with pytest.raises(ServerSelectionTimeoutError):
            c.app.get_collection("tagged", read_preference=Secondary(max_staleness=90)).find_one({})
