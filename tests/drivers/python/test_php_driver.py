"""PHP's mongodb extension (Debian's php-mongodb, on libmongoc) through mongo-pool's Unix socket.

tests/drivers/php/compat.php runs once per scenario with Debian's `php` CLI, using the
extension's own API (MongoDB\\Driver\\*); each scenario is one test. Skipped, with the reason,
when `php` or its mongodb extension is missing (`make drivers-go-php` installs them).
"""
import shutil
import subprocess

import pytest

from external_driver import (
    TOPOLOGIES,
    check_crud,
    check_cursor_batch_size_7_over_1000_documents,
    check_retryable_writes_across_a_stepdown,
    check_transactions_committed_and_aborted,
    run_scenario,
)
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


def test_connect_ping_hello_and_wire_versions(php_program, pool):
    facts = run_scenario(php_program, "connect", pool)
    assert facts["host"] == str(pool.socket_path), facts
    # mongo-pool copies atlas-sim's wire versions, 0..25 (MongoDB 8.0): above libmongoc
    # 1.23's own maximum, which it accepts (it refuses only a server whose minimum is above it).
    assert (facts["minWireVersion"], facts["maxWireVersion"]) == (0, 25), facts


def test_crud(php_program, pool):
    check_crud(php_program, pool)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cursor_batch_size_7_over_1000_documents(php_program, pool_factory, topology):
    check_cursor_batch_size_7_over_1000_documents(php_program, pool_factory(topology))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_transactions_committed_and_aborted(php_program, pool_factory, topology):
    check_transactions_committed_and_aborted(php_program, pool_factory(topology), topology)


def test_retryable_writes_across_a_stepdown(php_program, pool):
    check_retryable_writes_across_a_stepdown(php_program, pool)
