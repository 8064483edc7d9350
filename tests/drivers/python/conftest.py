"""Fixtures that start real processes: atlas-sim (and, where needed, a local moto STS).

Every process is started on 127.0.0.1 with free ports, read for its start line, and stopped
when the test ends, whatever happens.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
ATLAS_SIM = Path(os.environ.get("ATLAS_SIM_BIN", TARGET / "debug" / "atlas-sim"))
MOTO_SERVER = Path(sys.executable).parent / "moto_server"

KEY_ID = "AKIDPYTHONTEST"
SECRET = "python-test-secret-key"
USER_ARN = f"arn:aws:iam::123456789012:user/{KEY_ID}"


class AtlasSim:
    """A running atlas-sim: its start line plus helpers for the control API."""

    def __init__(self, proc, start):
        self.proc = proc
        self.start = start
        self.uri = start["uri"]
        self.control = start["control"]

    def status(self):
        with urllib.request.urlopen(self.control + "/status", timeout=5) as r:
            return json.load(r)

    def post(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.control + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_atlas_sim(*args, tmp_path):
    if not ATLAS_SIM.exists():
        pytest.fail(f"{ATLAS_SIM} is missing: build it with `cargo build -p mongo-pool-testkit` (make test builds it)")
    log = open(tmp_path / f"atlas-sim-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([str(ATLAS_SIM), "--state-dir", str(tmp_path / "sim-state"), *args],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=5)
        log.flush()
        pytest.fail(f"atlas-sim exited {proc.returncode}: {Path(log.name).read_text()}")
    return AtlasSim(proc, json.loads(line))


@pytest.fixture
def atlas_sim_factory(tmp_path):
    started = []

    def factory(*args):
        sim = start_atlas_sim(*args, tmp_path=tmp_path)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials in the environment, as pymongo-auth-aws reads them."""
    def set_credentials(key_id=KEY_ID, secret=SECRET, token=None):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        if token is None:
            monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        else:
            monkeypatch.setenv("AWS_SESSION_TOKEN", token)
        for var in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    set_credentials()
    return set_credentials


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A local moto STS/IAM server that verifies SigV4 signatures once `enable_auth()` ran."""

    def __init__(self, proc, url):
        self.proc = proc
        self.url = url

    def client(self, service, key_id="AKIAIOSFODNN7EXAMPLE", secret="bootstrap", token=None):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret,
                            aws_session_token=token)

    def enable_auth(self):
        """From now on moto authenticates every action (its INITIAL_NO_AUTH_ACTION_COUNT = 0).

        Set at run time rather than in the environment at start-up, so that the identities
        can be created first: with auth on, even the first CreateUser needs a known key.
        """
        req = urllib.request.Request(self.url + "/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


def start_moto(log_dir):
    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} is missing: run `make venv`")
    port = free_port()
    log = open(log_dir / "moto.log", "w")
    env = dict(os.environ)
    # Auth is switched on by Moto.enable_auth() once the identities exist.
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited {proc.returncode}: see {log.name}")
        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start within 60 s")
    return Moto(proc, url)


def stop_process(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def moto(tmp_path):
    """A fresh moto server with auth off (call `enable_auth()` when set up)."""
    server = start_moto(tmp_path)
    yield server
    stop_process(server.proc)


MOTO_ACCOUNT = "123456789012"
MOTO_USER = "alice"
MOTO_ROLE = "app-role"
MOTO_SESSION = "lambda-session"


class MotoIdentities:
    """moto with an IAM user's access key and an assumed role's temporary credentials, and
    signature checking on."""

    def __init__(self, server, user_key, role_key):
        self.server = server
        self.url = server.url
        self.user_key = user_key        # (key_id, secret)
        self.role_key = role_key        # (key_id, secret, session_token)
        self.user_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:user/{MOTO_USER}"
        self.role_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:role/{MOTO_ROLE}"
        self.assumed_role_arn = f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{MOTO_ROLE}/{MOTO_SESSION}"


@pytest.fixture(scope="module")
def moto_identities(tmp_path_factory):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        iam = server.client("iam")
        iam.create_user(UserName=MOTO_USER)
        key = iam.create_access_key(UserName=MOTO_USER)["AccessKey"]
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
        iam.create_role(RoleName=MOTO_ROLE, AssumeRolePolicyDocument=trust)
        creds = server.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{MOTO_ACCOUNT}:role/{MOTO_ROLE}",
            RoleSessionName=MOTO_SESSION)["Credentials"]
        server.enable_auth()
        yield MotoIdentities(server, (key["AccessKeyId"], key["SecretAccessKey"]),
                             (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
    finally:
        stop_process(server.proc)
