"""A Node.js handler run by AWS's runtime interface client for Node (`aws-lambda-ric`) under
lambda-sim, with mongo-pool as its extension, against atlas-sim.

tests/drivers/lambda-ric holds the handler (the Node.js driver on mongo-pool's socket, its client
made once outside the handler) and a `bootstrap` that starts the runtime interface client, as a
container image or a custom runtime does. Skipped, with the reason, when the client's native
addon is not built (`make drivers-lambda-ric` installs it; it compiles curl and aws-lambda-cpp).
"""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pool_fixtures import KEY_ID, ROOT, SECRET, TARGET, _stop, start_sim

RIC_DIR = ROOT / "tests" / "drivers" / "lambda-ric"
LAMBDA_SIM = Path(os.environ.get("LAMBDA_SIM_BIN", TARGET / "debug" / "lambda-sim"))
MONGO_POOL = Path(os.environ.get("MONGO_POOL_BIN", TARGET / "debug" / "mongo-pool"))
RUN_TIMEOUT = 120

EVENTS = [
    {"op": "insert", "id": 1},
    {"op": "insert", "id": 2},
    {"op": "insert", "id": 3},
    {"op": "list"},
    {"op": "transfer"},
    {"op": "stats"},
]


@pytest.fixture
def ric_function():
    addon = RIC_DIR / "node_modules" / "aws-lambda-ric" / "rapid-client.node"
    if not addon.exists():
        pytest.skip(f"aws-lambda-ric suite skipped: {addon} is missing (`make drivers-lambda-ric` "
                    "installs it: npm, then a native build that needs cmake)")
    if not (RIC_DIR / "node_modules" / "mongodb").is_dir():
        pytest.skip("aws-lambda-ric suite skipped: the mongodb driver is not installed in "
                    f"{RIC_DIR} (`make drivers-lambda-ric`)")
    for binary in (LAMBDA_SIM, MONGO_POOL):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `cargo build --workspace --bins`")
    return RIC_DIR / "bootstrap"


def test_node_handler_under_the_runtime_interface_client_with_mongo_pool_as_extension(
        ric_function, tmp_path):
    sim = start_sim(tmp_path, "--topology", "replset")
    sock_dir = Path(tempfile.mkdtemp(prefix="mp-ric-", dir="/tmp"))  # sun_path: 108 bytes
    try:
        socket = sock_dir / "mongo-pool.sock"
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
        logs = tmp_path / "logs"
        env = {
            "MONGO_POOL_URI": sim.uri,
            "MONGO_POOL_SOCKET": str(socket),
            "MONGO_POOL_LOG": "debug",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
            # The function configuration's Handler, which the runtime interface client reads.
            "_HANDLER": "handler.handler",
        }
        command = [str(LAMBDA_SIM), "--function", str(ric_function), "--extension", str(MONGO_POOL),
                   "--invocations", str(len(EVENTS)), "--event-file", str(events),
                   "--freeze-ms", "300", "--logs", str(logs)]
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             stdin=subprocess.DEVNULL)
        phases = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]

        def logs_text():
            return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                             for p in sorted(logs.glob("*.log")))

        assert run.returncode == 0, \
            f"lambda-sim exit {run.returncode}\n{run.stdout}\n{run.stderr}\n{logs_text()}"
        init = [p for p in phases if p["phase"] == "init"]
        assert [p["status"] for p in init] == ["ok"], phases
        invokes = [p for p in phases if p["phase"] == "invoke"]
        assert [p["status"] for p in invokes] == ["ok"] * len(EVENTS), f"{phases}\n{logs_text()}"
        responses = [p["response"] for p in invokes]
        assert responses[:3] == [{"inserted": 1}, {"inserted": 2}, {"inserted": 3}], responses
        assert responses[3] == {"ids": [1, 2, 3]}, responses
        assert responses[4] == {"balances": {"alice": 70, "bob": 30}}, responses
        assert responses[5]["pinned"]["transactions"] == 0, responses
        shutdown = [p for p in phases if p["phase"] == "shutdown"]
        assert len(shutdown) == 1 and shutdown[0]["exits"] == {"mongo-pool": 0}, shutdown
        assert shutdown[0]["killed"] == [], shutdown

        # Everything went through mongo-pool to atlas-sim: the three notes are there, and the
        # aborted transaction left nothing behind.
        st = sim.status()
        inserts = sum(m.get("commands", {}).get("insert", 0) for m in st["members"].values())
        assert inserts >= 4, st
        assert sum(m.get("commands", {}).get("abortTransaction", 0)
                   for m in st["members"].values()) >= 1, st
    finally:
        _stop(sim.proc)
        shutil.rmtree(sock_dir, ignore_errors=True)
