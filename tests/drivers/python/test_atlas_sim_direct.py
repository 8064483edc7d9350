"""pymongo with pymongo-auth-aws pointed straight at atlas-sim (not through mongo-pool).

This proves atlas-sim speaks TLS, MONGODB-AWS and the commands we use the way a real Atlas
cluster does: if an official driver cannot tell the difference, tests built on atlas-sim mean
something.
"""
import json

import pymongo
import pytest
from pymongo.errors import OperationFailure

from conftest import KEY_ID, SECRET, USER_ARN

TOPOLOGIES = ["replset", "sharded"]


def client(sim, **kw):
    return pymongo.MongoClient(sim.uri, serverSelectionTimeoutMS=10000, **kw)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_crud_cursor_transaction_and_aggregate_over_tls(atlas_sim_factory, aws_env, topology):
    sim = atlas_sim_factory("--topology", topology, "--principal", f"{KEY_ID}:{SECRET}")
    with client(sim) as c:
        coll = c.app.notes
        coll.insert_one({"_id": "a", "n": 1})
        coll.insert_many([{"_id": i, "n": i} for i in range(200)])
        assert coll.find_one({"_id": "a"})["n"] == 1
        assert coll.update_one({"_id": "a"}, {"$inc": {"n": 5}}).modified_count == 1
        assert coll.find_one({"_id": "a"})["n"] == 6
        assert coll.delete_many({"n": {"$gte": 150}}).deleted_count == 50

        # A cursor across many batches.
        seen = [d["_id"] for d in coll.find({"n": {"$lt": 150}, "_id": {"$ne": "a"}}, batch_size=7).sort("_id", 1)]
        assert seen == list(range(150))

        # A transaction: committed writes are visible, aborted ones are not.
        with c.start_session() as s:
            with s.start_transaction():
                coll.insert_one({"_id": "tx1"}, session=s)
                coll.update_one({"_id": "a"}, {"$set": {"tx": True}}, session=s)
        assert coll.find_one({"_id": "tx1"}) is not None
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"_id": "tx2"}, session=s)
            s.abort_transaction()
        assert coll.find_one({"_id": "tx2"}) is None

        result = list(coll.aggregate([
            {"$match": {"n": {"$lt": 10}, "_id": {"$ne": "a"}}},
            {"$group": {"_id": None, "total": {"$sum": "$n"}, "count": {"$sum": 1}}},
        ]))
        assert result == [{"_id": None, "total": sum(range(10)), "count": 10}]

        status = c.admin.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == [{"user": USER_ARN, "db": "$external"}]

    st = sim.status()
    assert st["auth"]["failed"] == 0
    assert st["auth"]["successful"] >= 1
    if topology == "sharded":
        assert st["primary"] is None
        assert all(m["state"] == "MONGOS" for m in st["members"].values())
    else:
        assert st["primary"] == sim.start["primary"]


def test_wrong_secret_fails_with_code_18(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", f"{KEY_ID}:{SECRET}")
    aws_env(secret="not-the-secret")
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
    assert err.value.code == 18
    assert "Authentication failed" in str(err.value)
    st = sim.status()
    assert st["auth"]["failed"] >= 1
    assert "signature" in st["auth"]["last_failure"].lower()
    assert "not-the-secret" not in json.dumps(st)


def test_caller_without_database_user_fails_with_the_same_masked_error(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", f"{KEY_ID}:{SECRET}",
                            "--user", "arn:aws:iam::123456789012:role/someone-else")
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
    assert err.value.code == 18
    assert USER_ARN in sim.status()["auth"]["last_failure"]


def test_temporary_credentials_with_session_token(atlas_sim_factory, aws_env, tmp_path):
    principals = tmp_path / "principals.json"
    principals.write_text(json.dumps([{
        "key_id": "ASIATEMPORARY",
        "secret": "temporary-secret",
        "session_token": "session-token-value",
        "arn": "arn:aws:sts::123456789012:assumed-role/lambda-role/my-function",
    }]))
    sim = atlas_sim_factory("--principals-file", str(principals),
                            "--user", "arn:aws:iam::123456789012:role/lambda-role")
    aws_env(key_id="ASIATEMPORARY", secret="temporary-secret", token="session-token-value")
    with client(sim) as c:
        c.app.notes.insert_one({"x": 1})
        user = c.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"][0]["user"]
        assert user == "arn:aws:iam::123456789012:role/lambda-role"
    aws_env(key_id="ASIATEMPORARY", secret="temporary-secret", token="some-other-token")
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
        assert err.value.code == 18


def test_unique_index_violation_is_duplicate_key(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", f"{KEY_ID}:{SECRET}")
    with client(sim) as c:
        c.app.users.create_index("email", unique=True)
        c.app.users.insert_one({"email": "a@example.com"})
        with pytest.raises(pymongo.errors.DuplicateKeyError) as err:
            c.app.users.insert_one({"email": "a@example.com"})
        assert err.value.code == 11000


def test_secondary_reads_are_served_by_a_secondary(atlas_sim_factory, aws_env):
    sim = atlas_sim_factory("--principal", f"{KEY_ID}:{SECRET}")
    with client(sim) as c:
        c.app.notes.insert_one({"x": 1})
    with client(sim, readPreference="secondary") as c:
        for _ in range(5):
            assert c.app.notes.find_one({"x": 1}) is not None
    st = sim.status()
    primary = st["primary"]
    secondary_finds = sum(m["commands"].get("find", 0)
                          for key, m in st["members"].items() if key != primary)
    assert secondary_finds >= 5


# --- Forwarding to STS: atlas-sim --sts-url pointed at a local moto that checks SigV4 itself.

def authenticated_user(c):
    status = c.admin.command("connectionStatus")
    return status["authInfo"]["authenticatedUsers"][0]["user"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_iam_user_key_is_verified_by_moto_and_maps_to_the_user_arn(
        atlas_sim_factory, aws_env, moto_identities, topology):
    key_id, secret = moto_identities.user_key
    sim = atlas_sim_factory("--topology", topology, "--sts-url", moto_identities.url,
                            "--user", moto_identities.user_arn)
    aws_env(key_id=key_id, secret=secret)
    with client(sim) as c:
        c.app.notes.insert_one({"via": "moto"})
        assert c.app.notes.count_documents({"via": "moto"}) == 1
        assert authenticated_user(c) == moto_identities.user_arn
    st = sim.status()
    assert st["auth"]["failed"] == 0, st["auth"]
    assert st["sts_calls"] >= 1


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_assumed_role_temporary_credentials_map_to_the_role_user(
        atlas_sim_factory, aws_env, moto_identities, topology):
    key_id, secret, token = moto_identities.role_key
    sim = atlas_sim_factory("--topology", topology, "--sts-url", moto_identities.url,
                            "--user", moto_identities.role_arn)
    aws_env(key_id=key_id, secret=secret, token=token)
    with client(sim) as c:
        c.app.notes.insert_one({"role": True})
        assert authenticated_user(c) == moto_identities.role_arn
    assert sim.status()["auth"]["failed"] == 0


def test_a_bad_signature_is_rejected_by_moto_and_reported_in_status(
        atlas_sim_factory, aws_env, moto_identities):
    key_id, _ = moto_identities.user_key
    sim = atlas_sim_factory("--sts-url", moto_identities.url, "--user", moto_identities.user_arn)
    aws_env(key_id=key_id, secret="not-the-secret")
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
    assert err.value.code == 18
    assert "Authentication failed" in str(err.value)
    st = sim.status()
    assert st["auth"]["failed"] >= 1 and st["auth"]["successful"] == 0
    assert "SignatureDoesNotMatch" in st["auth"]["last_failure"], st["auth"]["last_failure"]
    assert "not-the-secret" not in json.dumps(st)


def test_a_wrong_session_token_is_rejected_by_moto(atlas_sim_factory, aws_env, moto_identities):
    key_id, secret, _ = moto_identities.role_key
    sim = atlas_sim_factory("--sts-url", moto_identities.url, "--user", moto_identities.role_arn)
    aws_env(key_id=key_id, secret=secret, token="not-the-token")
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
    assert err.value.code == 18
    assert "InvalidClientTokenId" in sim.status()["auth"]["last_failure"]


def test_a_verified_caller_without_a_database_user_is_refused(
        atlas_sim_factory, aws_env, moto_identities):
    key_id, secret = moto_identities.user_key
    sim = atlas_sim_factory("--sts-url", moto_identities.url, "--user", moto_identities.role_arn)
    aws_env(key_id=key_id, secret=secret)
    with client(sim) as c:
        with pytest.raises(OperationFailure) as err:
            c.app.notes.find_one()
    assert err.value.code == 18
    assert moto_identities.user_arn in sim.status()["auth"]["last_failure"]
