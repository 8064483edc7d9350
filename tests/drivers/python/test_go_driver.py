"""The Go driver (Debian's golang-mongodb-mongo-driver-dev) through mongo-pool's Unix socket.

tests/drivers/go/compat is built once per run with Debian's Go toolchain in GOPATH mode against
the packaged driver source (/usr/share/gocode), offline; each scenario is one test. Skipped,
with the reason, when the toolchain or the driver package is missing (`make drivers-go-php`
installs them).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from external_driver import (
    TOPOLOGIES,
    check_crud,
    check_cursor_batch_size_7_over_1000_documents,
    check_retryable_writes_across_a_stepdown,
    check_transactions_committed_and_aborted,
    run_scenario,
)
from pool_fixtures import ROOT, TARGET, pool, pool_factory  # noqa: F401 (pytest fixtures)

GOPATH = Path("/usr/share/gocode")
DRIVER_SRC = GOPATH / "src" / "go.mongodb.org" / "mongo-driver"
PROGRAM = ROOT / "tests" / "drivers" / "go" / "compat"
BUILD_TIMEOUT = 300


def go_env():
    env = dict(os.environ)
    env.update({
        "GO111MODULE": "off",       # Debian's packaged modules live in a GOPATH, not a module cache
        "GOPATH": str(GOPATH),
        "GOPROXY": "off",           # offline: everything comes from the Debian packages
        "GOFLAGS": "",
        "GOCACHE": os.environ.get("GOCACHE", str(TARGET / "go-cache")),
    })
    return env


@pytest.fixture(scope="module")
def go_program(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go driver suite skipped: no `go` on PATH (apt-get install golang-go; "
                    "`make drivers-go-php` does it)")
    if not (DRIVER_SRC / "mongo").is_dir():
        pytest.skip(f"Go driver suite skipped: {DRIVER_SRC} is missing (apt-get install "
                    "golang-mongodb-mongo-driver-dev; `make drivers-go-php` does it)")
    out = tmp_path_factory.mktemp("go") / "compat"
    try:
        build = subprocess.run([go, "build", "-o", str(out), "."], cwd=PROGRAM, env=go_env(),
                               capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"go build did not finish within {BUILD_TIMEOUT} s")
    assert build.returncode == 0, f"go build failed:\n{build.stderr}"
    return [str(out)]


def test_connect_ping_hello_and_wire_versions(go_program, pool):
    facts = run_scenario(go_program, "connect", pool)
    # mongo-pool copies atlas-sim's wire versions, 0..25 (MongoDB 8.0): beyond the Go driver
    # 1.8's 14, which it accepts (it refuses only a server whose minimum is above its maximum).
    assert (facts["minWireVersion"], facts["maxWireVersion"]) == (0, 25), facts


def test_crud(go_program, pool):
    check_crud(go_program, pool)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_cursor_batch_size_7_over_1000_documents(go_program, pool_factory, topology):
    check_cursor_batch_size_7_over_1000_documents(go_program, pool_factory(topology))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_transactions_committed_and_aborted(go_program, pool_factory, topology):
    check_transactions_committed_and_aborted(go_program, pool_factory(topology), topology)


def test_retryable_writes_across_a_stepdown(go_program, pool):
    check_retryable_writes_across_a_stepdown(go_program, pool)
