// Fixtures for the Node.js driver suite: atlas-sim (a local Atlas with MONGODB-AWS over TLS)
// and mongo-pool as a sidecar in front of it, serving a Unix socket in a fresh temp directory.
//
// `startPool(t, {topology, uriOptions})` starts both and registers their teardown on the test
// context: SIGTERM, SIGKILL after a bounded wait, and mongo-pool must exit 0 on SIGTERM.
// Binaries: $MONGO_POOL_BIN / $ATLAS_SIM_BIN, else $CARGO_TARGET_DIR/debug (default: target/).
// Everything listens on 127.0.0.1 or a Unix socket; every wait is bounded.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TARGET = path.resolve(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'));
export const ATLAS_SIM = process.env.ATLAS_SIM_BIN ?? path.join(TARGET, 'debug', 'atlas-sim');
export const MONGO_POOL = process.env.MONGO_POOL_BIN ?? path.join(TARGET, 'debug', 'mongo-pool');

export const KEY_ID = 'AKIDPOOLDRIVERSNODE';
export const SECRET = 'pool-drivers-node-secret';

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const HTTP_TIMEOUT_MS = 5_000;

function exited(proc) {
  return proc.exitCode !== null || proc.signalCode !== null;
}

function waitExit(proc, ms) {
  if (exited(proc)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL after a bounded wait. Returns the exit code (null if killed). */
export async function stop(proc) {
  if (!exited(proc)) {
    proc.kill('SIGTERM');
    if (!(await waitExit(proc, STOP_TIMEOUT_MS))) {
      proc.kill('SIGKILL');
      await waitExit(proc, STOP_TIMEOUT_MS);
      return null;
    }
  }
  return proc.exitCode;
}

function tail(file, n = 4000) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-n);
  } catch {
    return '';
  }
}

/** A running atlas-sim: its start line and its control API. */
export class Sim {
  constructor(proc, start, logPath) {
    this.proc = proc;
    this.start = start;
    this.uri = start.uri;
    this.members = start.members;
    this.control = start.control;
    this.logPath = logPath;
  }

  async status() {
    const r = await fetch(`${this.control}/status`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (!r.ok) throw new Error(`GET /status: ${r.status}`);
    return r.json();
  }

  async post(p, body) {
    const r = await fetch(`${this.control}${p}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? '' : JSON.stringify(body),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    if (!r.ok) throw new Error(`POST ${p}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  /** {member: {command: count}} from a /status snapshot. */
  static commands(status) {
    return Object.fromEntries(Object.entries(status.members).map(([m, v]) => [m, { ...(v.commands ?? {}) }]));
  }
}

async function startSim(dir, topology) {
  if (!fs.existsSync(ATLAS_SIM)) {
    throw new Error(`${ATLAS_SIM} is missing: run \`cargo build --workspace --bins\` (make test builds it)`);
  }
  const logPath = path.join(dir, `atlas-sim-${topology}.log`);
  const log = fs.openSync(logPath, 'w');
  const proc = spawn(ATLAS_SIM, ['--state-dir', path.join(dir, `sim-state-${topology}`), '--topology', topology,
    '--principal', `${KEY_ID}:${SECRET}`], { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  const lines = readline.createInterface({ input: proc.stdout });
  let timer;
  const line = await Promise.race([
    new Promise((resolve) => lines.once('line', resolve)),
    new Promise((resolve) => proc.once('exit', () => resolve(null))),
    new Promise((resolve) => { timer = setTimeout(() => resolve(null), START_TIMEOUT_MS); }),
  ]);
  clearTimeout(timer);
  lines.on('line', () => {}); // keep draining
  if (!line) {
    await stop(proc);
    throw new Error(`atlas-sim printed no start line (exit ${proc.exitCode}): ${tail(logPath)}`);
  }
  return new Sim(proc, JSON.parse(line), logPath);
}

/** mongo-pool in front of an atlas-sim. */
export class Pool {
  constructor(proc, sim, socketPath, logPath) {
    this.proc = proc;
    this.sim = sim;
    this.socketPath = socketPath;
    this.logPath = logPath;
    this.socketUri = `mongodb://${encodeURIComponent(socketPath)}`;
  }

  /** The socket's connection string with options (never credentials). */
  uri(options = {}) {
    const query = new URLSearchParams(options).toString();
    return query ? `${this.socketUri}/?${query}` : this.socketUri;
  }

  logTail() {
    return tail(this.logPath);
  }
}

function poolEnv(uri, socketPath) {
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('AWS_') && !k.startsWith('MONGO_POOL_')));
  return {
    ...env,
    MONGO_POOL_URI: uri,
    MONGO_POOL_SOCKET: socketPath,
    MONGO_POOL_MODE: 'sidecar',
    MONGO_POOL_LOG: process.env.MONGO_POOL_TEST_LOG ?? 'debug',
    AWS_ACCESS_KEY_ID: KEY_ID,
    AWS_SECRET_ACCESS_KEY: SECRET,
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    NO_COLOR: '1',
  };
}

/**
 * Starts atlas-sim and mongo-pool for test context `t` (stopped when the test ends).
 * `uriOptions` go on the upstream (atlas-sim) connection string mongo-pool is given.
 */
export async function startPool(t, { topology = 'replset', uriOptions = {} } = {}) {
  if (!fs.existsSync(MONGO_POOL)) {
    throw new Error(`${MONGO_POOL} is missing: run \`cargo build --workspace --bins\` (make test builds it)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-node-'));
  const started = [];
  t.after(async () => {
    const problems = [];
    for (const { kind, proc, logPath } of started.reverse()) {
      const code = await stop(proc);
      if (kind === 'mongo-pool' && code !== 0) {
        problems.push(`mongo-pool exited ${code} on SIGTERM (expected 0):\n${tail(logPath)}`);
      }
    }
    if (problems.length === 0) fs.rmSync(dir, { recursive: true, force: true });
    if (problems.length) throw new Error(problems.join('\n'));
  });

  const sim = await startSim(dir, topology);
  started.push({ kind: 'atlas-sim', proc: sim.proc, logPath: sim.logPath });
  let uri = sim.uri;
  const extra = new URLSearchParams(uriOptions).toString();
  if (extra) uri += (uri.includes('?') ? '&' : '/?') + extra;

  const socketPath = path.join(dir, 'mongo-pool.sock');
  const logPath = path.join(dir, 'mongo-pool.log');
  const log = fs.openSync(logPath, 'w');
  const proc = spawn(MONGO_POOL, [], { env: poolEnv(uri, socketPath), stdio: ['ignore', log, log] });
  fs.closeSync(log);
  started.push({ kind: 'mongo-pool', proc, logPath });
  const pool = new Pool(proc, sim, socketPath, logPath);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!fs.existsSync(socketPath)) {
    if (exited(proc)) throw new Error(`mongo-pool exited ${proc.exitCode} before binding its socket:\n${pool.logTail()}`);
    if (Date.now() > deadline) throw new Error(`mongo-pool did not bind ${socketPath} within ${START_TIMEOUT_MS} ms:\n${pool.logTail()}`);
    await sleep(20);
  }
  return pool;
}

/** Polls `fn` until it returns a truthy value; fails after `ms`. */
export async function waitFor(fn, what, ms = 10_000, interval = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(interval);
  }
}

// Commands mongo-pool sends by itself (handshakes, authentication, topology checks, pings).
const BACKGROUND = new Set(['hello', 'isMaster', 'ismaster', 'ping', 'saslStart', 'saslContinue', 'buildInfo', 'endSessions']);

/** {member: {command: count}} of the driver's commands between two /status snapshots. */
export function delta(before, after) {
  const out = {};
  for (const [member, now] of Object.entries(after.members)) {
    const then = before.members[member]?.commands ?? {};
    const changed = {};
    for (const [name, n] of Object.entries(now.commands ?? {})) {
      const d = n - (then[name] ?? 0);
      if (!BACKGROUND.has(name) && d > 0) changed[name] = d;
    }
    if (Object.keys(changed).length) out[member] = changed;
  }
  return out;
}

/** Members of a delta that ran `command`, sorted. */
export function membersWith(d, command) {
  return Object.keys(d).filter((m) => (d[m][command] ?? 0) > 0).sort();
}
