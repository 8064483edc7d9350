"""Differential: the same pymongo scenario straight at atlas-sim and through mongo-pool's socket
must end the same way (issue 15, mongo-pool item 3).

A `find` cut off by `socketTimeoutMS`: the driver closes its connection (and its retry's), and
the member kills what it ran. Through mongo-pool that holds only if mongo-pool closes the
upstream connection running the request instead of returning it to its pool: otherwise the
find (and its retry) would run on upstream after the driver gave up.
"""
import pymongo

from conftest import KEY_ID, SECRET
from pool_fixtures import pool_factory  # noqa: F401 (pytest fixture)
from test_atlas_sim_server_behaviour import direct_factory, scenario_find_cut_off_by_socket_timeout

PRINCIPAL = f"{KEY_ID}:{SECRET}"


def socket_factory(pool):
    def make_client(**kw):
        kw.setdefault("serverSelectionTimeoutMS", 10000)
        return pymongo.MongoClient(pool.socket_uri, **kw)
    return make_client


def pool_stats(pool):
    with socket_factory(pool)() as c:
        return c.admin.command("mongoPoolStats")


def generations(stats):
    return {p["address"]: p["generation"] for p in stats["pools"]}


def test_a_find_cut_off_by_socket_timeout_ends_the_same_straight_and_through_the_socket(
        atlas_sim_factory, aws_env, pool_factory):  # noqa: F811
    straight_sim = atlas_sim_factory("--principal", PRINCIPAL)
    straight = scenario_find_cut_off_by_socket_timeout(straight_sim, direct_factory(straight_sim))

    pool = pool_factory()
    before = pool_stats(pool)
    auth_before = pool.sim.status()["auth"]["successful"]
    through = scenario_find_cut_off_by_socket_timeout(pool.sim, socket_factory(pool))
    after = pool_stats(pool)
    auth_after = pool.sim.status()["auth"]["successful"]

    print(f"straight: {straight}\nthrough:  {through}")
    for outcome in (straight, through):
        assert outcome["error"] == "NetworkTimeout", outcome
        assert outcome["finds_running"] == 0, outcome
        assert outcome["finds_killed"] >= 1, outcome
    assert through["error"] == straight["error"]
    # The driver retried the read once, straight and through: each attempt was killed.
    assert through["finds_killed"] == straight["finds_killed"], (straight, through)
    # A driver that gave up is no member failure: no pool clear, and nothing re-authenticated
    # beyond replacing the connections closed for the abandoned finds.
    assert generations(after) == generations(before), (before, after)
    assert after["abandoned"] - before["abandoned"] == through["finds_killed"], after
    assert auth_after - auth_before <= through["finds_killed"], (auth_before, auth_after)
    # And the pool still serves.
    with socket_factory(pool)() as c:
        c.app.cut.insert_one({"after": True})
        assert c.app.cut.count_documents({}) == 1
