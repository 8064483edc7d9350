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
