"""PHP's mongodb extension (Debian's php-mongodb, on libmongoc) through mongo-pool's Unix socket.

tests/drivers/php/compat.php runs once per scenario with Debian's `php` CLI, using the
extension's own API (MongoDB\\Driver\\*); each scenario is one test. Skipped, with the reason,
when `php` or its mongodb extension is missing (`make drivers-go-php` installs them).
"""
import shutil
import subprocess

import pytest

from external_driver import delta, run_scenario
from pool_fixtures import ROOT, pool, pool_factory  # noqa: F401 (pytest fixtures)

SCRIPT = ROOT / "tests" / "drivers" / "php" / "compat.php"


@pytest.fixture(scope="module")
def php_program():
    php = shutil.which("php")
    if php is None:
        pytest.skip("PHP driver suite skipped: no `php` on PATH (apt-get install php-cli "
                    "php-mongodb; `make drivers-go-php` does it)")
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout.split()
    if "mongodb" not in modules:
        pytest.skip("PHP driver suite skipped: `php -m` lists no mongodb extension (apt-get "
                    "install php-mongodb; `make drivers-go-php` does it)")
    return [php, str(SCRIPT)]


TOPOLOGIES = ["replset", "sharded"]


def test_connect_ping_hello_and_wire_versions(php_program, pool):
    facts = run_scenario(php_program, "connect", pool)
    assert facts["host"] == str(pool.socket_path), facts
    # mongo-pool copies atlas-sim's wire versions, 0..25 (MongoDB 8.0): above libmongoc
    # 1.23's own maximum, which it accepts (it refuses only a server whose minimum is above it).
    assert (facts["minWireVersion"], facts["maxWireVersion"]) == (0, 25), facts


def test_crud(php_program, pool):
    facts = run_scenario(php_program, "crud", pool)
    assert facts["ids"] == ["ada", "alan", "barbara", "edsger"], facts


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cursor_batch_size_7_over_1000_documents(php_program, pool_factory, topology):
    pool = pool_factory(topology)
    sim = pool.sim
    before = sim.status()
    facts = run_scenario(php_program, "cursor", pool)
    after = sim.status()
    assert facts["documents"] == 1000
    needed = (1000 + 6) // 7 - 1  # the find's first batch, then a getMore per batch of 7
    assert facts["getMores"] >= needed, facts
    get_mores = delta(before, after, "getMore")
    assert len(get_mores) == 1, f"one cursor's getMores went to several members: {get_mores}"
    assert sum(get_mores.values()) >= needed, get_mores
    assert all(m["cursors"] == 0 for m in after["members"].values()), after


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_transactions_committed_and_aborted(php_program, pool_factory, topology):
    pool = pool_factory(topology)
    sim = pool.sim
    before = sim.status()
    facts = run_scenario(php_program, "transaction", pool)
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


def test_retryable_writes_across_a_stepdown(php_program, pool):
    sim = pool.sim
    old_primary = sim.status()["primary"]
    facts = run_scenario(php_program, "retry", pool)
    assert facts["failpointAttempts"] == 2, facts
    new_primary = facts["newPrimary"]
    assert new_primary and new_primary != old_primary, facts
    assert facts["acked"] + len(facts["failed"]) == 200, facts
    assert len(facts["failed"]) <= 1, facts
    st = sim.status()
    assert st["primary"] == new_primary
    inserts = sim.counts("insert", st)
    assert inserts[old_primary] >= 100 and inserts[new_primary] >= 1, inserts
