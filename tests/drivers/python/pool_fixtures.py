"""Fixtures that run mongo-pool as a sidecar in front of atlas-sim, for driver suites.

`pool` (replica set) and `pool_factory` (any topology, URI options for the upstream) start
atlas-sim with a MONGODB-AWS principal, then `mongo-pool` with `MONGO_POOL_MODE=sidecar`, its
socket in a per-test directory and the principal's key in its environment. Drivers connect to
`socket_uri` (`mongodb://<url-encoded socket path>`) with no credentials. Both processes are
stopped on teardown (SIGTERM, then SIGKILL after a bounded wait); mongo-pool must exit 0 on
SIGTERM.

Everything listens on 127.0.0.1 or a Unix socket; every wait is bounded.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
ATLAS_SIM = Path(os.environ.get("ATLAS_SIM_BIN", TARGET / "debug" / "atlas-sim"))
MONGO_POOL = Path(os.environ.get("MONGO_POOL_BIN", TARGET / "debug" / "mongo-pool"))

KEY_ID = "AKIDPOOLDRIVERS"
SECRET = "pool-drivers-secret-key"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 5.0


def _stop(proc, timeout=STOP_TIMEOUT):
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if it had to be killed)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
        return None


class Sim:
    """A running atlas-sim: its start line and the control API."""

    def __init__(self, proc, start, log_path):
        self.proc = proc
        self.start = start
        self.uri = start["uri"]
        self.members = list(start["members"])
        self.control = start["control"]
        self.log_path = log_path

    def status(self):
        with urllib.request.urlopen(self.control + "/status", timeout=HTTP_TIMEOUT) as r:
            return json.load(r)

    def post(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.control + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            return json.load(r)

    def commands(self, status=None):
        """{member: {command: count}} from /status."""
        status = status or self.status()
        return {m: dict(v.get("commands", {})) for m, v in status["members"].items()}

    def counts(self, name, status=None):
        """{member: count of command `name`}."""
        return {m: c.get(name, 0) for m, c in self.commands(status).items()}


def start_sim(log_dir, *args):
    if not ATLAS_SIM.exists():
        pytest.fail(f"{ATLAS_SIM} is missing: run `cargo build --workspace --bins` (make test builds it)")
    log_path = log_dir / f"atlas-sim-{time.monotonic_ns()}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(ATLAS_SIM), "--state-dir", str(log_dir / f"sim-state-{time.monotonic_ns()}"),
         "--principal", f"{KEY_ID}:{SECRET}", *args],
        stdout=subprocess.PIPE, stderr=log, text=True, stdin=subprocess.DEVNULL)
    log.close()
    # The start line comes once every listener is up; bound the wait with a reader thread.
    line = _read_line(proc, START_TIMEOUT)
    if not line:
        _stop(proc)
        pytest.fail(f"atlas-sim printed no start line (exit {proc.returncode}): {log_path.read_text()[-2000:]}")
    return Sim(proc, json.loads(line), log_path)


def _read_line(proc, timeout):
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else ""


def pool_env(uri, socket_path, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MONGO_POOL_"))}
    env.update({
        "MONGO_POOL_URI": uri,
        "MONGO_POOL_SOCKET": str(socket_path),
        "MONGO_POOL_MODE": "sidecar",
        "MONGO_POOL_LOG": os.environ.get("MONGO_POOL_TEST_LOG", "debug"),
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        # After a refused authentication mongo-pool asks STS who the credentials are; keep that
        # call on this machine (a closed port: the diagnosis says STS is unreachable).
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
        "NO_COLOR": "1",
    })
    env.update(extra or {})
    return env


class Pool:
    """mongo-pool in front of an atlas-sim."""

    def __init__(self, proc, sim, socket_path, log_path, own_dir=None):
        self.proc = proc
        self.own_dir = own_dir
        self.sim = sim
        self.socket_path = socket_path
        self.log_path = log_path
        self.socket_uri = "mongodb://" + urllib.parse.quote(str(socket_path), safe="")

    def uri(self, **options):
        """`socket_uri` with connection-string options (no credentials, ever)."""
        if not options:
            return self.socket_uri
        return self.socket_uri + "/?" + urllib.parse.urlencode(options)

    def log_tail(self, n=4000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _short_dir(tmp_path):
    """A directory for the socket: sun_path holds 108 bytes, pytest's tmp_path can be long."""
    if len(str(tmp_path / "mongo-pool.sock")) < 100:
        return tmp_path, None
    d = tempfile.mkdtemp(prefix="mp-", dir="/tmp")
    return Path(d), d


def start_pool(sim, tmp_path, uri_options=None, env=None):
    if not MONGO_POOL.exists():
        pytest.fail(f"{MONGO_POOL} is missing: run `cargo build --workspace --bins` (make test builds it)")
    uri = sim.uri
    if uri_options:
        uri += ("&" if "?" in uri else "/?") + urllib.parse.urlencode(uri_options)
    sock_dir, own_dir = _short_dir(tmp_path)
    socket_path = sock_dir / "mongo-pool.sock"
    log_path = tmp_path / f"mongo-pool-{time.monotonic_ns()}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(MONGO_POOL)], env=pool_env(uri, socket_path, env),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    pool = Pool(proc, sim, socket_path, log_path, own_dir)
    deadline = time.monotonic() + START_TIMEOUT
    while not socket_path.exists():
        if proc.poll() is not None:
            pytest.fail(f"mongo-pool exited {proc.returncode} before binding its socket:\n{pool.log_tail()}")
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"mongo-pool did not bind {socket_path} within {START_TIMEOUT} s:\n{pool.log_tail()}")
        time.sleep(0.02)
    return pool


@pytest.fixture
def pool_factory(tmp_path):
    """pool_factory(topology="replset", uri_options=None, sim_args=(), env=None) -> Pool."""
    sims, pools = [], []

    def factory(topology="replset", uri_options=None, sim_args=(), env=None):
        sim = start_sim(tmp_path, "--topology", topology, *sim_args)
        sims.append(sim)
        pool = start_pool(sim, tmp_path, uri_options, env)
        pools.append(pool)
        return pool

    yield factory
    problems = []
    for pool in pools:
        code = _stop(pool.proc)
        if code != 0:
            problems.append(f"mongo-pool exited {code} on SIGTERM (expected 0):\n{pool.log_tail()}")
        if pool.own_dir:
            shutil.rmtree(pool.own_dir, ignore_errors=True)
    for sim in sims:
        _stop(sim.proc)
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def pool(pool_factory):
    """mongo-pool in front of a 3-member atlas-sim replica set."""
    return pool_factory()
