#!/usr/bin/env python3
"""`make demo`: mongo-pool and the sample function under lambda-sim, against atlas-sim.

Starts atlas-sim (TLS, three members, a few ms of latency per reply, a slow STS and an idle
disconnect shorter than the freeze between invocations), runs one Lambda execution environment
with lambda-sim (mongo-pool as the extension, the sample `bootstrap` as the function, a freeze
between invocations), then prints what happened: each invocation's latency and `db_ms`, the
upstream connections opened and authentications made, and the state after SHUTDOWN.

Only the standard library: `make demo` needs nothing but the binaries it builds first.
Exits non-zero when an invocation failed, the extension did not exit 0 in time, or connections
were left open on atlas-sim.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("MONGO_POOL_BIN_DIR",
                          Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"))

# The execution role's temporary credentials, as Lambda gives them to the function and to
# every extension. atlas-sim knows them (see principals below) and maps them to the role.
ROLE_ARN = "arn:aws:iam::123456789012:role/notes-function-role"
CALLER_ARN = "arn:aws:sts::123456789012:assumed-role/notes-function-role/notes-function"
KEY_ID = "ASIADEMOEXAMPLEKEY01"
SECRET = "demo-secret-access-key-not-real"
TOKEN = "demo-session-token-not-real"

EVENTS = [
    {"action": "ping"},
    {"action": "put", "id": "welcome", "body": {"title": "Hello", "text": "from mongo-pool"}},
    {"action": "get", "id": "welcome"},
    {"action": "put", "id": "second", "body": {"title": "Warm", "text": "no new connections"}},
    {"action": "list", "limit": 10},
]


def fail(message):
    print(f"demo: {message}", file=sys.stderr)
    sys.exit(1)


def binary(name):
    path = BIN / name
    if not path.exists():
        fail(f"{path} is missing: run `make demo` (it builds the binaries first)")
    return path


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def start_atlas_sim(work, args):
    principals = work / "principals.json"
    principals.write_text(json.dumps([{
        "key_id": KEY_ID, "secret": SECRET, "session_token": TOKEN, "arn": CALLER_ARN,
    }]))
    log = open(work / "atlas-sim.log", "w")
    proc = subprocess.Popen(
        [str(binary("atlas-sim")), "--members", "3",
         "--principals-file", str(principals), "--user", ROLE_ARN,
         "--latency-ms", str(args.latency_ms), "--sts-delay-ms", str(args.sts_delay_ms),
         "--idle-disconnect-ms", str(args.idle_disconnect_ms)],
        stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=5)
        fail(f"atlas-sim exited ({proc.returncode}); see {work / 'atlas-sim.log'}")
    return proc, json.loads(line)


def connection_counts(status):
    members = status["members"].values()
    return (sum(m["connections"]["current"] for m in members),
            sum(m["connections"]["total_created"] for m in members),
            sum(m["commands"].get("endSessions", 0) for m in members))


def wait_closed(control, limit_s=1.0):
    """atlas-sim's open connections, polled until 0 or `limit_s` passed."""
    deadline = time.monotonic() + limit_s
    while True:
        status = get_json(control + "/status")
        open_now = connection_counts(status)[0]
        if open_now == 0 or time.monotonic() >= deadline:
            return status
        time.sleep(0.05)


def summary_line(log_path):
    """mongo-pool's closing summary (a JSON log line) from its log file, if any."""
    if not log_path.exists():
        return None
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = record.get("fields", record)
        if fields.get("message") == "mongo-pool stopped":
            return fields
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze-ms", type=int, default=1500,
                        help="freeze between invocations (default 1500)")
    parser.add_argument("--idle-disconnect-ms", type=int, default=1000,
                        help="atlas-sim closes connections idle this long (default 1000)")
    parser.add_argument("--latency-ms", type=int, default=3,
                        help="atlas-sim's latency per reply (default 3)")
    parser.add_argument("--sts-delay-ms", type=int, default=40,
                        help="atlas-sim's delay per STS verification (default 40)")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mongo-pool-demo-", dir="/tmp"))
    logs = work / "logs"
    logs.mkdir()
    events = work / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))

    sim, start = start_atlas_sim(work, args)
    try:
        print(f"atlas-sim: 3 members over TLS, {args.latency_ms} ms per reply, "
              f"STS {args.sts_delay_ms} ms, idle disconnect {args.idle_disconnect_ms} ms")
        print(f"lambda-sim: mongo-pool + sample function, {len(EVENTS)} invocations, "
              f"{args.freeze_ms} ms freeze between them\n")
        env = {
            "MONGO_POOL_URI": start["uri"],
            "MONGO_POOL_SOCKET": str(work / "mongo-pool.sock"),
            "MONGO_POOL_LOG_FORMAT": "json",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": TOKEN,
            "NOTES_DB": "demo",
            "NOTES_COLLECTION": "notes",
        }
        command = [str(binary("lambda-sim")), "--function", str(binary("bootstrap")),
                   "--extension", str(binary("mongo-pool")),
                   "--invocations", str(len(EVENTS)), "--event-file", str(events),
                   "--freeze-ms", str(args.freeze_ms), "--logs", str(logs)]
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        run = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=120)
        phases = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
        status = wait_closed(start["control"])
    finally:
        sim.terminate()
        sim.wait(timeout=10)

    ok = report(phases, status, summary_line(logs / "mongo-pool.log"), run.returncode,
                args.freeze_ms > args.idle_disconnect_ms)
    if args.keep or not ok:
        print(f"\nlogs: {logs}")
    sys.exit(0 if ok else 1)


def report(phases, status, summary, lambda_sim_rc, frozen_out):
    ok = lambda_sim_rc == 0
    for phase in phases:
        kind = phase.get("phase")
        if kind == "init":
            print(f"init        {phase['ms']:8.1f} ms  {phase.get('status', 'ok')}")
        elif kind == "invoke":
            response = phase.get("response") or {}
            db_ms = response.get("db_ms")
            db = f"db_ms {db_ms:6.1f}" if isinstance(db_ms, (int, float)) else "db_ms     -"
            detail = describe(response)
            print(f"invoke {phase['n']:<3}  {phase['ms']:8.1f} ms  {db}  "
                  f"{phase['status']:<7} {detail}")
            ok &= phase["status"] == "ok"
        elif kind == "shutdown":
            exits = ", ".join(f"{k}={v}" for k, v in phase["exits"].items())
            killed = phase.get("killed") or []
            print(f"shutdown    {phase['ms']:8.1f} ms  exits: {exits}"
                  + (f"  killed: {', '.join(killed)}" if killed else ""))
            ok &= not killed and phase["exits"].get("mongo-pool") == 0
    open_now, created, end_sessions = connection_counts(status)
    auth = status["auth"]
    print()
    print("atlas-sim saw")
    print(f"  {'connections opened':<32} {created}")
    print(f"  {'authentications':<32} {auth['successful']} "
          f"(STS calls {status['sts_calls']}, failures {auth['failed']})")
    print(f"  {'endSessions':<32} {end_sessions}")
    print(f"  {'connections open after shutdown':<32} {open_now}")
    if summary:
        print("mongo-pool reported")
        for key in ("requests", "upstream_connections_created", "authentications",
                    "checkout_waits", "sessions_ended"):
            if key in summary:
                print(f"  {key.replace('_', ' '):<32} {summary[key]}")
    ok &= open_now == 0
    print()
    if frozen_out:
        print("Every freeze outlasted atlas-sim's idle disconnect, so each thawed invocation found its\n"
              "connections closed; mongo-pool noticed, reconnected and authenticated once per new\n"
              "connection, and no invocation saw an error. Run with --freeze-ms 200 to see warm\n"
              "invocations that open no connection at all.\n")
    print("demo: " + ("ok" if ok else "FAILED"))
    return ok


def describe(response):
    if not response.get("ok", False):
        return f"error: {response.get('error', response)}"
    shown = {k: v for k, v in response.items() if k not in ("ok", "db_ms")}
    text = json.dumps(shown, separators=(",", ":"))
    return text if len(text) <= 70 else text[:67] + "..."


if __name__ == "__main__":
    main()
