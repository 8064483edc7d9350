"""Running a driver written in another language (Go, PHP) against the pool fixtures.

The program gets `SCENARIO SOCKET_URI CONTROL_URL`, checks what a user would notice itself and
exits 1 with a message on stderr when something is wrong, else prints one JSON line of facts
that the test compares with atlas-sim's `/status`. Every run is bounded in time.
"""
import json
import subprocess

import pytest

RUN_TIMEOUT = 150.0


def run_scenario(command, scenario, pool, env=None, timeout=RUN_TIMEOUT):
    """Runs `command + [scenario, socket_uri, control_url]`; returns its facts (a dict)."""
    args = [*command, scenario, pool.socket_uri, pool.sim.control]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{scenario}: no result within {timeout} s\nstdout: {e.stdout}\nstderr: {e.stderr}"
                    f"\nmongo-pool log:\n{pool.log_tail()}")
    if proc.returncode != 0:
        pytest.fail(f"{scenario}: exit {proc.returncode}\nstderr: {proc.stderr[-4000:]}\n"
                    f"stdout: {proc.stdout[-2000:]}\nmongo-pool log:\n{pool.log_tail()}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{scenario}: exit 0 but no facts printed\nstderr: {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def delta(before, after, command):
    """{member: how many more `command`s} between two /status snapshots (members with more)."""
    out = {}
    for member, now in after["members"].items():
        then = before["members"].get(member, {}).get("commands", {}).get(command, 0)
        n = now.get("commands", {}).get(command, 0) - then
        if n > 0:
            out[member] = n
    return out


# --- the scenarios every external driver runs, with the checks against atlas-sim's /status ---

TOPOLOGIES = ["replset", "sharded"]


def check_crud(program, pool):
    facts = run_scenario(program, "crud", pool)
    assert facts["ids"] == ["ada", "alan", "barbara", "edsger"], facts


def check_cursor_batch_size_7_over_1000_documents(program, pool):
    """One cursor, 1000 documents in batches of 7: every getMore reaches the member that
    opened it, and nothing stays open."""
    sim = pool.sim
    before = sim.status()
    facts = run_scenario(program, "cursor", pool)
    after = sim.status()
    assert facts["documents"] == 1000
    needed = (1000 + 6) // 7 - 1  # the find's first batch, then a getMore per batch of 7
    assert facts["getMores"] >= needed, facts
    get_mores = delta(before, after, "getMore")
    assert len(get_mores) == 1, f"one cursor's getMores went to several members: {get_mores}"
    assert sum(get_mores.values()) >= needed, get_mores
    assert all(m["cursors"] == 0 for m in after["members"].values()), after


def check_transactions_committed_and_aborted(program, pool, topology):
    """A committed and two aborted transactions: on a replica set commit and abort reach the
    current primary; on a sharded cluster one transaction commits on one mongos."""
    sim = pool.sim
    before = sim.status()
    facts = run_scenario(program, "transaction", pool)
    after = sim.status()
    assert facts["log"] == ["t1"], facts
    assert facts["commits"] >= 1 and facts["aborts"] >= 2, facts
    assert facts["pinned"]["transactions"] == 0, facts
    commits = delta(before, after, "commitTransaction")
    aborts = delta(before, after, "abortTransaction")
    assert sum(aborts.values()) >= 2, aborts
    if topology == "replset":
        assert list(commits) == [after["primary"]], commits
        assert list(aborts) == [after["primary"]], aborts
    else:  # pinned to the mongos that ran its statements
        assert len(commits) == 1, f"one transaction committed on several mongoses: {commits}"


def check_retryable_writes_across_a_stepdown(program, pool):
    """A fail point's retryable error takes exactly one retry; 200 inserts across a stepdown
    are each stored once, at most one failing."""
    sim = pool.sim
    old_primary = sim.status()["primary"]
    facts = run_scenario(program, "retry", pool)
    assert facts["failpointAttempts"] == 2, facts
    new_primary = facts["newPrimary"]
    assert new_primary and new_primary != old_primary, facts
    assert facts["acked"] + len(facts["failed"]) == 200, facts
    assert len(facts["failed"]) <= 1, facts
    st = sim.status()
    assert st["primary"] == new_primary
    inserts = sim.counts("insert", st)
    assert inserts[old_primary] >= 100 and inserts[new_primary] >= 1, inserts
    return facts
