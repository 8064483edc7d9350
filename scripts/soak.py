#!/usr/bin/env python3
"""Soak: mixed traffic from many pymongo clients through mongo-pool while atlas-sim fails.

    make soak                       # SOAK_SECONDS=600 by default
    SOAK_SECONDS=60 make soak       # a short run
    .venv/bin/python scripts/soak.py --seconds 60 --clients 32

atlas-sim (a three-member replica set over TLS with MONGODB-AWS and temporary credentials: an
access key, a secret and a session token, and an idle disconnect) and mongo-pool (sidecar mode)
are started by the Python driver suite's fixtures (tests/drivers/python/pool_fixtures.py). Each
client is its own MongoClient on mongo-pool's socket, with retryable writes, in its own thread,
running a mix of:

- `$inc` on its own counter document (not idempotent: applied twice, the count shows it),
- inserts whose `key` is unique per attempt (a duplicate shows as two documents with one key),
- reads: the counter, its own inserts through a small-batch cursor (`getMore`), a count, and a
  secondary read.

Every FAULT_EVERY seconds one fault, in turn: a stepdown (`POST /stepdown`), dropped
connections (`POST /drop-connections`), a freeze (traffic paused, mongo-pool SIGSTOPped for
longer than atlas-sim's idle disconnect, then SIGCONT and traffic again), STS throttling
(`POST /sts/throttle` followed by dropped connections, so that mongo-pool has to authenticate
again while STS refuses).

At the end, read directly from atlas-sim (not through mongo-pool):

- lost writes: a counter below its acknowledged `$inc`s, an acknowledged insert missing;
- duplicates: a counter above acknowledged plus failed `$inc`s (a failed one may or may not
  have been applied), two documents with one key, a retried insert refused as a duplicate key;
- leaks: after mongo-pool exits (SIGTERM, exit 0 expected), atlas-sim `/status` shows no
  client connection open on any member;
- RSS flat: mongo-pool's VmRSS sampled every 2 s; after the first tenth of the run (warm-up), the
  peak of the last third must not exceed the peak of the first third by more than 25 % or
  8 MiB, whichever is larger (a leak grows with traffic; allocator steps do not repeat);
- recovery: after the last fault, every client completes a write and a read;
- secrets: neither the secret key nor the session token appears in mongo-pool's or
  atlas-sim's log.

Prints a summary; exits 1 on any violation, 2 when the set-up fails. Logs stay in the printed
directory when something fails (or with --keep).
"""
import argparse
import collections
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "drivers" / "python"))

import pymongo  # noqa: E402
from pymongo.errors import DuplicateKeyError, PyMongoError  # noqa: E402

import pool_fixtures  # noqa: E402

# Temporary credentials, as a Lambda execution role has: atlas-sim checks that the signed
# request carries this exact session token.
TEMP_KEY_ID = "ASIASOAKTEMPORARY"
TEMP_SECRET = "soak-temporary-secret-key-0123456789"
TEMP_TOKEN = "soak-session-token-" + "Q" * 64
ROLE_ARN = "arn:aws:iam::123456789012:role/soak-role"
ASSUMED_ARN = "arn:aws:sts::123456789012:assumed-role/soak-role/soak-session"

# Nothing listens there (the discard port), and nothing leaves the machine.
NO_STS = "http://127.0.0.1:9"
IDLE_DISCONNECT_MS = 3000
FREEZE_S = IDLE_DISCONNECT_MS / 1000 + 1.5
MAX_POOL_SIZE = 8
RSS_SAMPLE_S = 2.0
DB = "soak"


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Gate:
    """Lets traffic through, or pauses it and waits for requests in flight to finish."""

    def __init__(self):
        self.cv = threading.Condition()
        self.is_open = True
        self.busy = 0
        self.stopping = False

    def enter(self):
        with self.cv:
            while not self.is_open and not self.stopping:
                self.cv.wait(0.2)
            if self.stopping:
                return False
            self.busy += 1
            return True

    def leave(self):
        with self.cv:
            self.busy -= 1
            self.cv.notify_all()

    def close(self, timeout):
        """Pauses traffic; True once nothing is in flight (False after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            self.is_open = False
            while self.busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True

    def reopen(self):
        with self.cv:
            self.is_open = True
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()


class Client(threading.Thread):
    """One function's driver: its own MongoClient, its own counter and keys."""

    def __init__(self, index, uri, gate, deadline):
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.uri = uri
        self.gate = gate
        self.deadline = deadline
        self.counter_id = f"client-{index}"
        self.inc_acked = 0
        self.inc_failed = 0
        self.acked_keys = []
        self.failed_keys = []
        self.duplicate_key_errors = []
        self.ops = 0
        self.errors = collections.Counter()
        self.last_error = None
        self.seq = 0
        self.crashed = None

    def run(self):
        try:
            with pymongo.MongoClient(self.uri, retryWrites=True, retryReads=True,
                                     serverSelectionTimeoutMS=20000, socketTimeoutMS=30000,
                                     connectTimeoutMS=10000, maxPoolSize=4) as client:
                self.loop(client[DB])
        except BaseException as e:  # noqa: BLE001 (reported as a violation)
            self.crashed = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"

    def loop(self, db):
        rng = random.Random(self.index)
        while time.monotonic() < self.deadline:
            if not self.gate.enter():
                return
            try:
                self.one(db, rng)
            finally:
                self.gate.leave()
            time.sleep(rng.uniform(0.0, 0.01))

    def one(self, db, rng):
        roll = rng.random()
        self.ops += 1
        if roll < 0.35:
            try:
                db.counters.update_one({"_id": self.counter_id}, {"$inc": {"n": 1}}, upsert=True)
                self.inc_acked += 1
            except PyMongoError as e:
                self.inc_failed += 1
                self.error(e)
        elif roll < 0.65:
            self.seq += 1
            key = f"{self.index}-{self.seq}"
            try:
                db.events.insert_one({"key": key, "client": self.index})
                self.acked_keys.append(key)
            except DuplicateKeyError as e:
                # The driver's _id is sent again on a retry: a duplicate key means the first
                # attempt was applied and the retry was not recognised as one.
                self.duplicate_key_errors.append(key)
                self.failed_keys.append(key)
                self.error(e)
            except PyMongoError as e:
                self.failed_keys.append(key)
                self.error(e)
        else:
            try:
                kind = rng.randrange(4)
                if kind == 0:
                    db.counters.find_one({"_id": self.counter_id})
                elif kind == 1:
                    list(db.events.find({"client": self.index}).sort("key", 1).limit(6).batch_size(2))
                elif kind == 2:
                    db.events.count_documents({"client": self.index})
                else:
                    db.get_collection(
                        "counters", read_preference=pymongo.ReadPreference.SECONDARY_PREFERRED
                    ).find_one({"_id": self.counter_id})
            except PyMongoError as e:
                self.error(e)

    def error(self, e):
        self.errors[type(e).__name__] += 1
        self.last_error = f"{type(e).__name__}: {e}"
        time.sleep(0.05)


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.samples = []  # (seconds since start, KiB)
        self.done = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.done.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((time.monotonic() - start, kib))
            self.done.wait(RSS_SAMPLE_S)


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_verdict(samples):
    """(ok, text) for the criterion in the module docstring."""
    if len(samples) < 9:
        return True, f"only {len(samples)} samples: not judged"
    kept = samples[len(samples) // 10:]
    third = max(1, len(kept) // 3)
    first = max(k for _, k in kept[:third])
    last = max(k for _, k in kept[-third:])
    allowed = max(first * 1.25, first + 8 * 1024)
    text = (f"RSS peak {first / 1024:.1f} MiB in the first third, {last / 1024:.1f} MiB in the last "
            f"third (allowed {allowed / 1024:.1f}); min {min(k for _, k in samples) / 1024:.1f}, "
            f"max {max(k for _, k in samples) / 1024:.1f} MiB over {len(samples)} samples")
    return last <= allowed, text


class Faults(threading.Thread):
    """Injects one fault every `every` seconds, in turn, until `deadline`."""

    KINDS = ("stepdown", "drop-connections", "freeze", "sts-throttle")

    def __init__(self, pool, gate, every, deadline):
        super().__init__(name="faults", daemon=True)
        self.pool = pool
        self.gate = gate
        self.every = every
        self.deadline = deadline
        self.done = collections.Counter()
        self.problems = []
        self.max_upstream = 0
        self.stop_event = threading.Event()

    def run(self):
        n = 0
        while not self.stop_event.wait(self.every):
            # Leave quiet time at the end so that recovery is observed.
            if time.monotonic() + self.every > self.deadline:
                break
            kind = self.KINDS[n % len(self.KINDS)]
            n += 1
            try:
                self.inject(kind)
                self.done[kind] += 1
            except Exception as e:  # noqa: BLE001 (a set-up problem, reported)
                self.problems.append(f"{kind}: {type(e).__name__}: {e}")
                self.gate.reopen()
            self.note_upstream()

    def inject(self, kind):
        sim = self.pool.sim
        if kind == "stepdown":
            r = sim.post("/stepdown")
            log(f"stepdown: new primary {r.get('primary')}")
        elif kind == "drop-connections":
            r = sim.post("/drop-connections")
            log(f"drop-connections: {r.get('dropped')} dropped")
        elif kind == "sts-throttle":
            sim.post("/sts/throttle?times=4")
            r = sim.post("/drop-connections")
            log(f"sts-throttle: next 4 verifications throttled, {r.get('dropped')} connections dropped")
        elif kind == "freeze":
            if not self.gate.close(timeout=40):
                self.problems.append("freeze: requests still in flight after 40 s; froze anyway")
            pid = self.pool.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(FREEZE_S)
            finally:
                os.kill(pid, signal.SIGCONT)
                self.gate.reopen()
            log(f"freeze: mongo-pool stopped for {FREEZE_S:.1f} s "
                f"(idle disconnect {IDLE_DISCONNECT_MS} ms)")

    def note_upstream(self):
        try:
            st = self.pool.sim.status()
        except OSError:
            return
        for m in st["members"].values():
            self.max_upstream = max(self.max_upstream, m["connections"]["current"])


def verify_directly(sim, clients):
    """Reads what atlas-sim stored, with a driver of our own (not through mongo-pool)."""
    violations = []
    env_backup = {k: os.environ.get(k) for k in
                  ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    os.environ.update({"AWS_ACCESS_KEY_ID": TEMP_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEMP_SECRET,
                       "AWS_SESSION_TOKEN": TEMP_TOKEN})
    try:
        with pymongo.MongoClient(sim.uri, serverSelectionTimeoutMS=20000) as direct:
            db = direct[DB]
            stored = {d["_id"]: d.get("n", 0) for d in db.counters.find({})}
            keys = collections.Counter(d["key"] for d in db.events.find({}, {"key": 1}))
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    totals = collections.Counter()
    attempted = set()
    for c in clients:
        n = stored.get(c.counter_id, 0)
        if n < c.inc_acked:
            violations.append(f"lost write: {c.counter_id} n={n} < {c.inc_acked} acknowledged $inc")
        if n > c.inc_acked + c.inc_failed:
            violations.append(f"duplicate write: {c.counter_id} n={n} > {c.inc_acked} acknowledged "
                              f"+ {c.inc_failed} failed $inc")
        totals["inc_acked"] += c.inc_acked
        totals["inc_failed"] += c.inc_failed
        totals["inc_stored"] += n
        for key in c.acked_keys:
            attempted.add(key)
            if keys.get(key, 0) != 1:
                violations.append(f"acknowledged insert {key} stored {keys.get(key, 0)} times")
        for key in c.failed_keys:
            attempted.add(key)
            if keys.get(key, 0) > 1:
                violations.append(f"failed insert {key} stored {keys[key]} times")
            totals["failed_inserts_applied"] += keys.get(key, 0)
        for key in c.duplicate_key_errors:
            violations.append(f"insert {key}: a retry was refused as a duplicate key (applied twice?)")
        totals["inserts_acked"] += len(c.acked_keys)
        totals["inserts_failed"] += len(c.failed_keys)
    strangers = [k for k in keys if k not in attempted]
    if strangers:
        violations.append(f"{len(strangers)} stored keys nobody inserted, e.g. {strangers[:3]}")
    totals["inserts_stored"] = sum(keys.values())
    return violations, totals


def recovery_check(uri, clients):
    """After the last fault: each client's write and read go through (a few retries allowed)."""
    problems = []
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000, socketTimeoutMS=30000) as client:
        db = client[DB]
        for c in clients:
            for attempt in range(3):
                try:
                    db.recovery.insert_one({"_id": c.counter_id})
                    if db.recovery.find_one({"_id": c.counter_id}) is None:
                        problems.append(f"recovery: {c.counter_id}'s write is not readable")
                    break
                except PyMongoError as e:
                    if attempt == 2:
                        problems.append(f"recovery: {c.counter_id}: {type(e).__name__}: {e}")
                    time.sleep(1)
    return problems


def upstream_open(sim, timeout=10.0):
    """{member: open connections}, polled until all are 0 or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        st = sim.status()
        current = {m: v["connections"]["current"] for m, v in st["members"].items()}
        if not any(current.values()) or time.monotonic() > deadline:
            return current, st
        time.sleep(0.2)


def secrets_in(paths):
    found = []
    for p in paths:
        try:
            text = Path(p).read_text(errors="replace")
        except OSError:
            continue
        for name, secret in (("secret key", TEMP_SECRET), ("session token", TEMP_TOKEN)):
            if secret in text:
                found.append(f"the {name} appears in {p}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--clients", type=int, default=int(os.environ.get("SOAK_CLIENTS", "32")))
    ap.add_argument("--fault-every", type=float,
                    default=float(os.environ.get("SOAK_FAULT_EVERY", "10")))
    ap.add_argument("--keep", action="store_true", help="keep the logs even when all is well")
    args = ap.parse_args()
    if args.seconds <= 0 or args.clients <= 0 or args.fault_every <= 0:
        ap.error("--seconds, --clients and --fault-every must be positive")

    work = Path(tempfile.mkdtemp(prefix="mongo-pool-soak-", dir="/tmp"))
    principals = work / "principals.json"
    principals.write_text(json.dumps([{
        "key_id": TEMP_KEY_ID, "secret": TEMP_SECRET, "session_token": TEMP_TOKEN,
        "arn": ASSUMED_ARN}]))
    pool = sim = None
    violations = []
    started = time.monotonic()
    try:
        try:
            sim = pool_fixtures.start_sim(
                work, "--topology", "replset", "--principals-file", str(principals),
                "--user", ROLE_ARN, "--idle-disconnect-ms", str(IDLE_DISCONNECT_MS))
            pool = pool_fixtures.start_pool(
                sim, work, uri_options={"maxPoolSize": str(MAX_POOL_SIZE)},
                env={"AWS_ACCESS_KEY_ID": TEMP_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEMP_SECRET,
                     "AWS_SESSION_TOKEN": TEMP_TOKEN,
                     # The STS diagnosis after a refused authentication (throttling) stays on
                     # 127.0.0.1: a closed port, so it reports STS unreachable at once.
                     "AWS_ENDPOINT_URL_STS": NO_STS,
                     "MONGO_POOL_LOG": os.environ.get("SOAK_LOG", "info")})
        except BaseException as e:  # pytest.fail raises an OutcomeException (a BaseException)
            log(f"set-up failed: {type(e).__name__}: {e}")
            if sim is not None:
                pool_fixtures._stop(sim.proc)
            log(f"logs in {work}")
            return 2
        log(f"{args.clients} clients for {args.seconds} s, a fault every {args.fault_every:g} s; "
            f"mongo-pool pid {pool.proc.pid}, logs in {work}")

        gate = Gate()
        deadline = time.monotonic() + args.seconds
        rss = RssSampler(pool.proc.pid)
        rss.start()
        clients = [Client(i, pool.socket_uri, gate, deadline) for i in range(args.clients)]
        for c in clients:
            c.start()
        faults = Faults(pool, gate, args.fault_every, deadline)
        faults.start()

        last_report = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                ops = sum(c.ops for c in clients)
                errs = sum(sum(c.errors.values()) for c in clients)
                log(f"{ops} operations, {errs} errors, RSS {rss_kib(pool.proc.pid) or 0} KiB")
        faults.stop_event.set()
        faults.join(timeout=60)
        join_by = time.monotonic() + 60
        for c in clients:
            c.join(timeout=max(0.0, join_by - time.monotonic()))
        gate.stop()
        stuck = [c.name for c in clients if c.is_alive()]
        if stuck:
            violations.append(f"clients still in a request 60 s after the end: {stuck}")
        for c in clients:
            if c.crashed:
                violations.append(f"{c.name} crashed: {c.crashed}")
        violations += faults.problems

        violations += recovery_check(pool.socket_uri, clients)
        rss.done.set()
        rss.join(timeout=5)
        stats = None
        try:
            with pymongo.MongoClient(pool.socket_uri, serverSelectionTimeoutMS=10000) as c:
                stats = c.admin.command("mongoPoolStats")
        except PyMongoError as e:
            violations.append(f"mongoPoolStats failed: {e}")

        found, totals = verify_directly(sim, clients)
        violations += found

        code = pool_fixtures._stop(pool.proc, timeout=15)
        if code != 0:
            violations.append(f"mongo-pool exited {code} on SIGTERM (expected 0)")
        current, status = upstream_open(sim)
        if any(current.values()):
            violations.append(f"upstream connections left open after mongo-pool exited: {current}")
        rss_ok, rss_text = rss_verdict(rss.samples)
        if not rss_ok:
            violations.append("RSS grew: " + rss_text)
        pool_log = pool.log_path.read_text(errors="replace")
        if "panicked at" in pool_log:
            violations.append("mongo-pool panicked (see its log)")
        violations += secrets_in([pool.log_path, sim.log_path])

        errors = collections.Counter()
        for c in clients:
            errors.update(c.errors)
        ops = sum(c.ops for c in clients)
        elapsed = time.monotonic() - started
        print()
        print(f"soak summary ({elapsed:.0f} s in all, {args.seconds} s of traffic, "
              f"{args.clients} clients)")
        print(f"  operations      {ops} ({ops / args.seconds:.0f}/s), errors seen by clients "
              f"{sum(errors.values())}: {dict(errors) or 'none'}")
        print(f"  faults          {dict(faults.done)}")
        print(f"  $inc            acknowledged {totals['inc_acked']}, failed {totals['inc_failed']}, "
              f"stored {totals['inc_stored']}")
        print(f"  inserts         acknowledged {totals['inserts_acked']}, failed "
              f"{totals['inserts_failed']} (of which stored {totals['failed_inserts_applied']}), "
              f"stored {totals['inserts_stored']}")
        print(f"  upstream        at most {faults.max_upstream} connections on one member at a "
              f"fault (maxPoolSize {MAX_POOL_SIZE}); after exit: {current}")
        print(f"  atlas-sim auth  {status['auth']}")
        if stats:
            keep = {k: stats[k] for k in ("freezes", "pingFailures", "authentications")
                    if k in stats}
            print(f"  mongoPoolStats  {keep}")
        print(f"  memory          {rss_text}")
        print(f"  mongo-pool exit {code}")
        if violations:
            print(f"\nVIOLATIONS ({len(violations)}):")
            for v in violations[:50]:
                print(f"  - {v}")
            print(f"\nlogs kept in {work}")
            return 1
        print("\nno violation" + (f" (logs in {work})" if args.keep else ""))
        return 0
    finally:
        if pool is not None:
            pool_fixtures._stop(pool.proc)
        if sim is not None:
            pool_fixtures._stop(sim.proc)
        if not violations and not args.keep and pool is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
