"""A Lambda freeze, with real processes: mongo-pool is suspended (SIGSTOP, which is what a
freeze looks like from inside: nothing runs, then the clock has jumped) while the network drops
its upstream connections silently (atlas-sim's /blackhole: no FIN, no RST, no answers), then
resumed (SIGCONT). The first query after the thaw must succeed within connectTimeoutMS plus one
reconnect: idle connections are pinged with a short deadline and replaced, never waited on until
a TCP timeout (which would take minutes).
"""
import os
import signal
import time

import pymongo

from pool_fixtures import pool_factory  # noqa: F401 (pytest fixture)

CONNECT_TIMEOUT_S = 2.0
# One reconnect on loopback (TCP, TLS, hello, MONGODB-AWS) takes milliseconds; the margin is for a
# loaded 2-core machine. A request waiting on a dead socket would take minutes, not seconds.
RECONNECT_MARGIN_S = 8.0


def test_first_query_after_a_freeze_and_a_silent_drop_succeeds_promptly(pool_factory):
    pool = pool_factory(uri_options={"connectTimeoutMS": str(int(CONNECT_TIMEOUT_S * 1000))})
    with pymongo.MongoClient(pool.socket_uri, serverSelectionTimeoutMS=20000) as client:
        notes = client.app.notes
        notes.insert_one({"_id": "before"})
        before = pool.sim.status()
        os.kill(pool.proc.pid, signal.SIGSTOP)
        try:
            dropped = pool.sim.post("/blackhole?ms=120000")
            assert dropped["connections"] >= 1, "the freeze should strand live upstream connections"
            time.sleep(2.5)  # longer than the gap mongo-pool takes for a freeze
        finally:
            os.kill(pool.proc.pid, signal.SIGCONT)
        started = time.monotonic()
        assert notes.find_one({"_id": "before"}) == {"_id": "before"}
        elapsed = time.monotonic() - started
    assert elapsed < CONNECT_TIMEOUT_S + RECONNECT_MARGIN_S, (
        f"the first query after the thaw took {elapsed:.1f} s:\n{pool.log_tail()}"
    )
    after = pool.sim.status()
    created = lambda st: sum(m["connections"]["total_created"] for m in st["members"].values())  # noqa: E731
    assert created(after) > created(before), "the stranded connection must have been replaced"
    stats = pymongo.MongoClient(pool.socket_uri).admin.command("mongoPoolStats")
    assert stats["freezes"] >= 1
    assert stats["pingFailures"] >= 1
