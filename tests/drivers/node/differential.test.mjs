// Differential suite with the Node.js driver: each scenario runs twice with the same code, once
// straight at atlas-sim (MONGODB-AWS through @aws-sdk/credential-providers, as the driver in the
// function would) and once through mongo-pool's socket, each side against its own atlas-sim.
// The application's observable outcome must be the same both ways: documents stored, the
// error's name, code and labels, how many times a withTransaction callback ran. The straight
// run is the oracle (atlas-sim's server behaviour is checked on its own by the pymongo suite,
// test_atlas_sim_server_behaviour.py). Durations are printed for the record, not asserted.
//
// Run: node --test --test-reporter=tap tests/drivers/node/

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MongoClient } from 'mongodb';

import { KEY_ID, SECRET, startPool } from './fixtures.mjs';

const T = { timeout: 120_000 };

/** Both sides of one scenario: {straight: {sim, connect}, through: {sim, connect}}. */
async function sides(t) {
  // The straight side authenticates itself, with the key atlas-sim knows, from the
  // environment (the credential provider chain reads it).
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = SECRET;
  t.after(() => {
    for (const [k, v] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]]) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
  const straight = await startPool(t);
  const through = await startPool(t);
  const client = (uri) => (options = {}) => {
    const c = new MongoClient(uri, { serverSelectionTimeoutMS: 20_000, ...options });
    t.after(() => c.close(true));
    return c;
  };
  return {
    straight: { sim: straight.sim, connect: client(straight.sim.uri) },
    through: { sim: through.sim, connect: client(through.uri()) },
  };
}

async function bothWays(t, scenario) {
  const s = await sides(t);
  const out = {};
  for (const side of ['straight', 'through']) {
    const started = Date.now();
    out[side] = await scenario(s[side].sim, s[side].connect);
    t.diagnostic(`${scenario.name} ${side}: ${JSON.stringify(out[side])} in ${Date.now() - started} ms`);
  }
  return out;
}

/** What the application saw from `run()`: no error, or its name, code and labels. */
async function outcome(run) {
  try {
    await run();
    return { error: null };
  } catch (e) {
    return { error: e.name, code: e.code ?? null, labels: [...(e.errorLabels ?? [])].sort() };
  }
}

/**
 * One withTransaction whose callback inserts a document, with `interrupt(sim)` run after the
 * callback's first write (a stepdown, a window with no primary) or `failPoint` set before it.
 * The outcome: how often the callback ran and how many copies were stored.
 */
async function transaction(sim, connect, { collection, interrupt = null, failPoint = null }) {
  const c = connect();
  const coll = c.db('app').collection(collection);
  await coll.insertOne({ _id: 'warm' });
  if (failPoint) await sim.post('/failpoint', failPoint);
  let runs = 0;
  const session = c.startSession();
  try {
    await session.withTransaction(async () => {
      runs += 1;
      await coll.insertOne({ _id: 'once' }, { session });
      if (runs === 1 && interrupt) await interrupt(sim);
    });
  } finally {
    await session.endSession();
  }
  return { callbackRuns: runs, stored: await coll.countDocuments({ _id: 'once' }) };
}

const withTransactionInterruptedByStepdown = (sim, connect) => transaction(sim, connect, {
  collection: 'txn_stepdown', interrupt: (s) => s.post('/stepdown'),
});

const commitReplyLost = (sim, connect) => transaction(sim, connect, {
  collection: 'txn_lost_reply',
  failPoint: {
    configureFailPoint: 'failCommand', mode: { times: 1 },
    data: { failCommands: ['commitTransaction'], closeConnectionAfterApply: true },
  },
});

const commitDuringNoPrimary = (sim, connect) => transaction(sim, connect, {
  collection: 'txn_no_primary', interrupt: (s) => s.post('/no-primary?ms=1500'),
});

async function maxTimeMSExpiry(sim, connect) {
  const c = connect();
  const coll = c.db('app').collection('slow');
  await coll.insertOne({ _id: 1 });
  await sim.post('/failpoint', {
    configureFailPoint: 'failCommand', mode: { times: 1 },
    data: { failCommands: ['find'], blockConnection: true, blockTimeMS: 600_000 },
  });
  try {
    return await outcome(() => coll.findOne({}, { maxTimeMS: 200 }));
  } finally {
    await sim.post('/failpoint', { configureFailPoint: 'failCommand', mode: 'off' });
  }
}

test('withTransaction interrupted by a stepdown runs the callback again and stores once', T, async (t) => {
  const out = await bothWays(t, withTransactionInterruptedByStepdown);
  assert.deepEqual(out.through, out.straight);
  assert.deepEqual(out.straight, { callbackRuns: 2, stored: 1 });
});

test('a commit whose reply is lost is stored exactly once', T, async (t) => {
  const out = await bothWays(t, commitReplyLost);
  assert.deepEqual(out.through, out.straight);
  assert.deepEqual(out.straight, { callbackRuns: 1, stored: 1 });
});

test('a commit during a window with no primary', T, async (t) => {
  const out = await bothWays(t, commitDuringNoPrimary);
  assert.deepEqual(out.through, out.straight);
  assert.deepEqual(out.straight, { callbackRuns: 2, stored: 1 });
});

test('a maxTimeMS expiry is MaxTimeMSExpired both ways', T, async (t) => {
  const out = await bothWays(t, maxTimeMSExpiry);
  assert.deepEqual(out.through, out.straight);
  assert.equal(out.straight.code, 50);
});
