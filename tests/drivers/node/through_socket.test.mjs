// The Node.js `mongodb` driver (current release) through mongo-pool's Unix socket, in front of
// atlas-sim. Connection strings carry no credentials: mongo-pool authenticates upstream
// (MONGODB-AWS) and poses as a mongos on the socket. atlas-sim's /status (command counts per
// member, open cursors, authentications) proves where each request went. Issue 5, "Must show".
//
// Run: node --test --test-reporter=tap tests/drivers/node/

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';

import { Binary, MongoBulkWriteError, MongoClient, MongoServerError } from 'mongodb';

import { delta, membersWith, Sim, startPool, waitFor } from './fixtures.mjs';

const TOPOLOGIES = ['replset', 'sharded'];
const T = { timeout: 90_000 };

/** A client on the socket: no credentials, every wait bounded; closed when the test ends. */
function connect(t, pool, options = {}, uriOptions = {}) {
  const client = new MongoClient(pool.uri(uriOptions), {
    serverSelectionTimeoutMS: 10_000,
    connectTimeoutMS: 5_000,
    socketTimeoutMS: 60_000,
    appName: 'pool-drivers-node',
    ...options,
  });
  client.topologyTypes = [];
  client.on('topologyDescriptionChanged', (e) => client.topologyTypes.push(e.newDescription.type));
  t.after(() => client.close(true));
  return client;
}

const range = (n, from = 0) => Array.from({ length: n }, (_, i) => i + from);

// --- the core, on a replica set and on a sharded cluster ------------------------------------

for (const topology of TOPOLOGIES) {
  test(`CRUD [${topology}]`, T, async (t) => {
    const pool = await startPool(t, { topology });
    const c = connect(t, pool);
    const people = c.db('app').collection('people');
    const r1 = await people.insertOne({ _id: 'ada', name: 'Ada', born: 1815 });
    assert.equal(r1.acknowledged, true);
    assert.equal(r1.insertedId, 'ada');
    assert.equal(c.topologyTypes.at(-1), 'Sharded', 'mongo-pool poses as a mongos');
    const r2 = await people.insertMany(range(50).map((i) => ({ _id: `p${String(i).padStart(2, '0')}`, n: i })));
    assert.equal(r2.insertedCount, 50);

    assert.deepEqual(await people.findOne({ _id: 'ada' }), { _id: 'ada', name: 'Ada', born: 1815 });
    assert.equal(await people.countDocuments({}), 51);
    assert.equal(await people.countDocuments({ n: { $lt: 10 } }), 10);

    let r = await people.updateOne({ _id: 'ada' }, { $set: { field: 'maths' } });
    assert.deepEqual([r.matchedCount, r.modifiedCount], [1, 1]);
    r = await people.updateMany({ n: { $lt: 10 } }, { $set: { small: true } });
    assert.deepEqual([r.matchedCount, r.modifiedCount], [10, 10]);
    r = await people.replaceOne({ _id: 'p49' }, { n: 49, replaced: true });
    assert.equal(r.modifiedCount, 1);
    r = await people.updateOne({ _id: 'new' }, { $set: { n: 100 } }, { upsert: true });
    assert.equal(r.upsertedId, 'new');
    const after = await people.findOneAndUpdate({ _id: 'p00' }, { $inc: { n: 1000 } }, { returnDocument: 'after' });
    assert.equal(after.n, 1000);

    assert.deepEqual(await people.findOne({ _id: 'p49' }), { _id: 'p49', n: 49, replaced: true });
    assert.deepEqual(await people.distinct('small'), [true]);
    const total = await people.aggregate([{ $match: { n: { $lt: 10 } } }, { $group: { _id: null, sum: { $sum: '$n' } } }]).toArray();
    assert.deepEqual(total, [{ _id: null, sum: 45 }]);
    const names = (await people.find({ n: { $gte: 40, $lt: 50 } }, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => d._id);
    assert.deepEqual(names, range(10, 40).map((i) => `p${i}`));

    assert.equal((await people.deleteOne({ _id: 'ada' })).deletedCount, 1);
    assert.equal((await people.deleteMany({ small: true })).deletedCount, 10);
    assert.equal(await people.countDocuments({}), 41);
    const collections = (await c.db('app').listCollections().toArray()).map((x) => x.name);
    assert.ok(collections.includes('people'));
    assert.equal(await people.drop(), true);
    assert.equal(await people.countDocuments({}), 0);

    const st = await pool.sim.status();
    assert.equal(st.auth.failed, 0);
    const served = Object.entries(Sim.commands(st)).filter(([, c]) => c.insert).map(([m]) => m);
    assert.ok(served.length > 0, 'no insert reached atlas-sim');
    if (topology === 'replset') assert.deepEqual(served, [st.primary]);
  });

  test(`cursor with batchSize 7 over 1,000 documents while other connections query [${topology}]`, T, async (t) => {
    const pool = await startPool(t, { topology });
    const setup = connect(t, pool);
    await setup.db('app').collection('items').insertMany(range(1000).map((i) => ({ _id: i, v: i % 13 })));
    await setup.db('app').collection('other').insertMany(range(100).map((i) => ({ _id: i, k: i % 5 })));
    await setup.close();
    const before = await pool.sim.status();

    const shared = connect(t, pool, { maxPoolSize: 8 });
    // Four loops on clients of their own (their own downstream connections), two on the
    // cursor's client (so its getMores may travel over different downstream connections).
    const clients = [...range(4).map(() => connect(t, pool, { maxPoolSize: 1 })), shared, shared];
    const done = clients.map(() => 0);
    let stopping = false;
    let loopError = null;
    const loops = clients.map(async (client, k) => {
      const other = client.db('app').collection('other');
      try {
        while (!stopping) {
          const doc = await other.findOne({ _id: (k * 17 + done[k]) % 100 });
          assert.ok(doc);
          assert.equal(await other.countDocuments({ k: k % 5 }), 20);
          done[k] += 1;
        }
      } catch (e) {
        loopError ??= e;
      }
    });
    await waitFor(() => loopError || done.every((n) => n > 0), 'every query loop to get going');

    const atStart = done.reduce((a, b) => a + b);
    const ids = [];
    const values = [];
    for await (const doc of shared.db('app').collection('items').find({}).sort({ _id: 1 }).batchSize(7)) {
      ids.push(doc._id);
      values.push(doc.v);
    }
    const atEnd = done.reduce((a, b) => a + b);
    stopping = true;
    const stopped = await Promise.race([Promise.all(loops).then(() => true), sleep(30_000, false, { ref: false })]);
    assert.ok(stopped, 'a query loop did not stop');
    assert.equal(loopError, null, String(loopError?.stack));

    assert.deepEqual(ids, range(1000));
    assert.deepEqual(values, range(1000).map((i) => i % 13));
    assert.ok(atEnd > atStart, 'the other connections ran no query while the cursor was open');

    const d = delta(before, await pool.sim.status());
    const getMore = Object.fromEntries(Object.entries(d).filter(([, c]) => c.getMore).map(([m, c]) => [m, c.getMore]));
    assert.equal(Object.keys(getMore).length, 1, `getMores spread over members: ${JSON.stringify(getMore)}`);
    const [[owner, n]] = Object.entries(getMore);
    assert.ok(n >= Math.ceil((1000 - 7) / 7), `only ${n} getMores for 1,000 documents in batches of 7`);
    assert.ok((d[owner].find ?? 0) >= 1);
  });

  test(`transactions committed and aborted (withTransaction) [${topology}]`, T, async (t) => {
    const pool = await startPool(t, { topology });
    const sim = pool.sim;
    const c = connect(t, pool);
    const bank = c.db('bank');
    const accounts = bank.collection('accounts');
    const log = bank.collection('log');
    await accounts.insertMany([{ _id: 'alice', balance: 100 }, { _id: 'bob', balance: 0 }]);
    await bank.createCollection('log');

    const before = await sim.status();
    const session = c.startSession();
    try {
      const result = await session.withTransaction(async () => {
        await accounts.updateOne({ _id: 'alice' }, { $inc: { balance: -30 } }, { session });
        await accounts.updateOne({ _id: 'bob' }, { $inc: { balance: 30 } }, { session });
        await log.insertOne({ _id: 't1', amount: 30 }, { session });
        assert.equal((await accounts.findOne({ _id: 'bob' }, { session })).balance, 30);
        return 'committed';
      });
      assert.equal(result, 'committed');
    } finally {
      await session.endSession();
    }
    const committed = await sim.status();
    let d = delta(before, committed);
    assert.equal(Object.keys(d).length, 1, `one transaction ran on several members: ${JSON.stringify(d)}`);
    let [[member, cmds]] = Object.entries(d);
    assert.ok((cmds.commitTransaction ?? 0) >= 1 && cmds.update === 2, JSON.stringify(cmds));
    if (topology === 'replset') assert.equal(member, committed.primary);
    assert.equal((await accounts.findOne({ _id: 'alice' })).balance, 70);
    assert.equal((await accounts.findOne({ _id: 'bob' })).balance, 30);
    assert.deepEqual(await log.findOne({ _id: 't1' }), { _id: 't1', amount: 30 });

    class Abandon extends Error {}
    const mid = await sim.status();
    const s2 = c.startSession();
    try {
      await assert.rejects(s2.withTransaction(async () => {
        await accounts.updateOne({ _id: 'alice' }, { $inc: { balance: -1000 } }, { session: s2 });
        await log.insertOne({ _id: 't2', amount: 1000 }, { session: s2 });
        assert.equal((await accounts.findOne({ _id: 'alice' }, { session: s2 })).balance, -930);
        throw new Abandon('changed my mind');
      }), Abandon);
    } finally {
      await s2.endSession();
    }
    const aborted = await sim.status();
    d = delta(mid, aborted);
    assert.equal(Object.keys(d).length, 1, `one transaction ran on several members: ${JSON.stringify(d)}`);
    [[member, cmds]] = Object.entries(d);
    assert.ok((cmds.abortTransaction ?? 0) >= 1 && !cmds.commitTransaction, JSON.stringify(cmds));
    assert.equal((await accounts.findOne({ _id: 'alice' })).balance, 70);
    assert.equal(await log.findOne({ _id: 't2' }), null);

    // An explicit abort, too.
    const s3 = c.startSession();
    try {
      s3.startTransaction();
      await log.insertOne({ _id: 't3' }, { session: s3 });
      await s3.abortTransaction();
    } finally {
      await s3.endSession();
    }
    assert.equal(await log.findOne({ _id: 't3' }), null);
    assert.equal(await log.countDocuments({}), 1);
    const stats = await c.db('admin').command({ mongoPoolStats: 1 });
    assert.equal(stats.pinned.transactions, 0);
  });
}

const KILL_CASES = [['replset', 'primary'], ['replset', 'secondary'], ['sharded', 'primary']];
for (const [topology, readPreference] of KILL_CASES) {
  test(`closing a cursor early kills it on the member that opened it [${topology}, ${readPreference}]`, T, async (t) => {
    const pool = await startPool(t, { topology });
    const sim = pool.sim;
    const setup = connect(t, pool);
    await setup.db('app').collection('items').insertMany(range(1000).map((i) => ({ _id: i })));
    await setup.close();

    const c = connect(t, pool, {}, { readPreference });
    const before = await sim.status();
    const cursor = c.db('app').collection('items').find({}).batchSize(7);
    const first = [];
    for (let i = 0; i < 10; i++) first.push((await cursor.next())._id); // the find and one getMore
    assert.equal(new Set(first).size, 10);
    const opened = await sim.status();
    const finds = membersWith(delta(before, opened), 'find');
    assert.equal(finds.length, 1, `find on ${finds}`);
    const [owner] = finds;
    assert.equal(opened.members[owner].cursors, 1);
    if (readPreference === 'secondary') assert.notEqual(owner, opened.primary);

    await cursor.close();
    const after = await waitFor(async () => {
      const st = await sim.status();
      return membersWith(delta(before, st), 'killCursors').length ? st : null;
    }, 'atlas-sim to count a killCursors');
    const d = delta(before, after);
    assert.deepEqual(membersWith(d, 'killCursors'), [owner], JSON.stringify(d));
    assert.equal(after.members[owner].cursors, 0);
    assert.ok(Object.values(after.members).every((m) => m.cursors === 0));
    assert.equal((await c.db('admin').command({ mongoPoolStats: 1 })).pinned.cursors, 0);
    assert.equal(await c.db('app').collection('items').countDocuments({}), 1000);
  });
}

// --- the rest, on a replica set ---------------------------------------------------------------

test('insertMany of 20,000 documents', T, async (t) => {
  const pool = await startPool(t);
  const c = connect(t, pool);
  const coll = c.db('app').collection('bulk');
  const pad = 'x'.repeat(64);
  const r = await coll.insertMany(range(20000).map((i) => ({ _id: i, name: `doc-${i}`, pad })));
  assert.equal(r.acknowledged, true);
  assert.equal(r.insertedCount, 20000);
  assert.equal(await coll.countDocuments({}), 20000);
  const ids = (await coll.find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).batchSize(5000).toArray()).map((d) => d._id);
  assert.deepEqual(ids, range(20000));
  assert.deepEqual(await coll.findOne({ _id: 19999 }), { _id: 19999, name: 'doc-19999', pad });
});

test('a unique-index violation surfaces as 11000', T, async (t) => {
  const pool = await startPool(t);
  const c = connect(t, pool);
  const users = c.db('app').collection('users');
  await users.createIndex({ email: 1 }, { unique: true });
  await users.insertOne({ _id: 1, email: 'a@example.com' });

  await assert.rejects(users.insertOne({ _id: 2, email: 'a@example.com' }),
    (e) => e instanceof MongoServerError && e.code === 11000);
  await assert.rejects(users.insertMany([{ _id: 3, email: 'b@example.com' }, { _id: 4, email: 'a@example.com' }]),
    (e) => {
      assert.ok(e instanceof MongoBulkWriteError, String(e));
      assert.equal(e.code, 11000);
      assert.deepEqual(e.writeErrors.map((w) => [w.code, w.index]), [[11000, 1]]);
      assert.equal(e.result.insertedCount, 1);
      return true;
    });
  await assert.rejects(users.updateOne({ _id: 3 }, { $set: { email: 'a@example.com' } }),
    (e) => e instanceof MongoServerError && e.code === 11000);
  await assert.rejects(users.insertOne({ _id: 1, email: 'c@example.com' }), // the _id index
    (e) => e instanceof MongoServerError && e.code === 11000);
  assert.deepEqual((await users.find().sort({ _id: 1 }).toArray()).map((d) => d._id), [1, 3]);
});

test('w: 0 writes (unacknowledged)', T, async (t) => {
  const pool = await startPool(t);
  // One downstream connection: a reply to a moreToCome request would be read as the reply to
  // the next command and break it.
  const c = connect(t, pool, { maxPoolSize: 1 });
  const fire = c.db('app').collection('fire', { writeConcern: { w: 0 } });
  const r = await fire.insertOne({ _id: 1 });
  assert.equal(r.acknowledged, false);
  await fire.insertMany(range(99, 2).map((i) => ({ _id: i })));
  await fire.updateOne({ _id: 1 }, { $set: { seen: true } });
  await fire.deleteOne({ _id: 100 });
  assert.equal((await c.db('admin').command({ ping: 1 })).ok, 1);

  const acked = c.db('app').collection('fire');
  await waitFor(async () => (await acked.countDocuments({})) === 99 && (await acked.findOne({ _id: 1 }))?.seen === true,
    'the unacknowledged writes to appear');
  assert.deepEqual((await acked.find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => d._id), range(99, 1));

  const w0 = connect(t, pool, {}, { w: '0' }); // w=0 from the connection string
  const r2 = await w0.db('app').collection('fire2').insertOne({ _id: 'x' });
  assert.equal(r2.acknowledged, false);
  await waitFor(async () => c.db('app').collection('fire2').findOne({ _id: 'x' }), 'the w=0 insert to appear');
});

test('an unacknowledged write mongo-pool cannot deliver gets no reply', T, async (t) => {
  // mongo-pool gives up on finding a primary after 300 ms (its own serverSelectionTimeoutMS).
  const pool = await startPool(t, { uriOptions: { serverSelectionTimeoutMS: '300' } });
  const sim = pool.sim;
  const c = connect(t, pool, { maxPoolSize: 1 }); // one downstream connection, as above
  const fire = c.db('app').collection('fire');
  await fire.insertOne({ _id: 0 });
  await sim.post('/no-primary?ms=2000');
  // An acknowledged write meets "not writable primary" (mongo-pool now knows there is no
  // primary), its retry finds none within 300 ms.
  await assert.rejects(fire.insertOne({ _id: 'lost' }));
  const r = await fire.insertOne({ _id: 1 }, { writeConcern: { w: 0 } });
  assert.equal(r.acknowledged, false); // lost: no primary for mongo-pool
  // At once, on the same connection: this command gets its own reply, not a stray one to the
  // moreToCome request.
  const st = await c.db('admin').command({ mongoPoolStats: 1 });
  assert.equal(st.ok, 1);
  assert.ok(st.proxyErrors >= 1);
  await waitFor(async () => (await sim.status()).primary, 'atlas-sim to elect a primary again');
  assert.equal((await c.db('admin').command({ ping: 1 })).ok, 1);
  await fire.insertOne({ _id: 2 });
  assert.deepEqual((await fire.find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => d._id), [0, 2]);
});

test('readPreference=secondary reads are served by a secondary', T, async (t) => {
  const pool = await startPool(t);
  const sim = pool.sim;
  const setup = connect(t, pool);
  await setup.db('app').collection('reads').insertMany(range(100).map((i) => ({ _id: i })));
  const before = await sim.status();
  const c = connect(t, pool, {}, { readPreference: 'secondary' });
  const reads = c.db('app').collection('reads');
  for (let i = 0; i < 20; i++) assert.deepEqual(await reads.findOne({ _id: i }), { _id: i });
  assert.equal((await reads.find({}).batchSize(10).toArray()).length, 100);
  assert.equal(await reads.countDocuments({}), 100);
  const after = await sim.status();
  assert.equal(after.primary, before.primary);
  const d = delta(before, after);
  for (const command of ['find', 'getMore', 'aggregate']) {
    const served = membersWith(d, command);
    assert.ok(served.length > 0 && !served.includes(after.primary), `${command} served by ${served}, primary ${after.primary}`);
    assert.ok(served.every((m) => after.members[m].state === 'SECONDARY'));
  }
  assert.ok(Object.values(d).reduce((a, c) => a + (c.find ?? 0), 0) >= 21);
});

test('200 retryable writes across a stepdown', T, async (t) => {
  const pool = await startPool(t);
  const sim = pool.sim;
  const oldPrimary = (await sim.status()).primary;
  const c = connect(t, pool, {}, { retryWrites: 'true' });
  const coll = c.db('app').collection('retry');
  const acked = [];
  const failed = [];
  let stepdown;
  for (let i = 0; i < 200; i++) {
    if (i === 100) {
      // From a task of its own, while the writes go on.
      stepdown = sim.post('/stepdown').then((reply) => ({ reply }), (error) => ({ error }));
    }
    try {
      const r = await coll.insertOne({ _id: i, seq: i });
      assert.equal(r.acknowledged, true);
      acked.push(i);
    } catch (e) {
      failed.push([i, String(e)]);
    }
    if (i >= 100) await sleep(5); // keep writing while the election happens
  }
  const outcome = await stepdown;
  assert.ok(outcome.reply, String(outcome.error));
  const newPrimary = outcome.reply.primary;
  assert.ok(newPrimary && newPrimary !== oldPrimary);

  assert.ok(failed.length <= 1, JSON.stringify(failed));
  assert.equal(acked.length + failed.length, 200);
  const stored = (await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
  assert.equal(new Set(stored).size, stored.length);
  assert.equal(await coll.countDocuments({}), stored.length);
  const failedIds = new Set(failed.map(([i]) => i));
  for (const id of acked) assert.ok(stored.includes(id), `acknowledged write ${id} is missing`);
  for (const id of stored) assert.ok(acked.includes(id) || failedIds.has(id), `${id} stored but never written`);

  const st = await sim.status();
  assert.equal(st.primary, newPrimary);
  const inserts = Object.fromEntries(Object.entries(Sim.commands(st)).map(([m, cmds]) => [m, cmds.insert ?? 0]));
  assert.ok(inserts[oldPrimary] >= 100 && inserts[newPrimary] >= 1, JSON.stringify(inserts));
});

test('loadBalanced=true mode', T, async (t) => {
  const pool = await startPool(t);
  const c = connect(t, pool, {}, { loadBalanced: 'true' });
  const coll = c.db('app').collection('lb');
  await coll.insertMany(range(100).map((i) => ({ _id: i, n: i })));
  assert.equal(c.topologyTypes.at(-1), 'LoadBalanced');
  assert.deepEqual(await coll.findOne({ _id: 7 }), { _id: 7, n: 7 });
  assert.equal((await coll.updateMany({ n: { $gte: 50 } }, { $set: { big: true } })).modifiedCount, 50);
  assert.equal((await coll.deleteOne({ _id: 0 })).deletedCount, 1);
  const ids = (await coll.find({}).sort({ _id: 1 }).batchSize(7).toArray()).map((d) => d._id);
  assert.deepEqual(ids, range(99, 1));
  const session = c.startSession();
  try {
    await session.withTransaction(async () => {
      await coll.insertOne({ _id: 'tx' }, { session });
    });
  } finally {
    await session.endSession();
  }
  assert.equal(await coll.countDocuments({}), 100);
  assert.equal((await c.db('admin').command({ mongoPoolStats: 1 })).ok, 1);
});

test('a 15 MiB document round trip', T, async (t) => {
  const pool = await startPool(t);
  const c = connect(t, pool);
  const big = c.db('app').collection('big');
  const blob = crypto.randomBytes(15 * 1024 * 1024);
  await big.insertOne({ _id: 'big', blob: new Binary(blob) });
  const doc = await big.findOne({ _id: 'big' });
  assert.ok(Buffer.from(doc.blob.value()).equals(blob), 'the 15 MiB binary came back different');
  const text = 'm'.repeat(15 * 1024 * 1024);
  await big.replaceOne({ _id: 'big' }, { text });
  assert.ok((await big.findOne({ _id: 'big' })).text === text, 'the 15 MiB string came back different');
});

test('mongoPoolStats', T, async (t) => {
  const pool = await startPool(t);
  const sim = pool.sim;
  const c = connect(t, pool);
  await c.db('app').collection('s').insertOne({ _id: 1 });
  assert.deepEqual(await c.db('app').collection('s').findOne(), { _id: 1 });
  const st = await c.db('admin').command({ mongoPoolStats: 1 });
  assert.equal((await c.db('app').command({ mongoPoolStats: 1 })).ok, 1); // any database
  assert.equal(st.ok, 1);
  assert.deepEqual(new Set(st.pools.map((p) => p.address)), new Set(sim.members));
  assert.deepEqual(st.pools.map((p) => p.state).sort(), ['Primary', 'Secondary', 'Secondary']);
  assert.ok(st.pools.every((p) => p.total >= p.idle && p.idle >= 0 && p.inUse >= 0));
  assert.ok(st.authentications.ok >= 1);
  assert.equal(st.authentications.failed, 0);
  assert.equal(st.authentications.ok, st.upstreamConnections.created);
  assert.ok(st.downstreamConnections.current >= 1 && st.downstreamConnections.total >= 1);
  assert.ok(st.forwarded >= 2 && st.requests >= st.forwarded);
  for (const key of ['checkouts', 'checkoutWaits', 'uptimeMillis']) assert.ok(key in st, key);

  // Every upstream connection authenticated once (no auth per request), as atlas-sim saw.
  await waitFor(async () => {
    const now = await c.db('admin').command({ mongoPoolStats: 1 });
    const seen = (await sim.status()).auth.successful;
    return now.authentications.ok === seen && seen === now.upstreamConnections.created;
  }, 'mongoPoolStats and atlas-sim to agree on authentications');
  const commands = Sim.commands(await sim.status());
  assert.ok(!Object.values(commands).some((cmds) => 'mongoPoolStats' in cmds), 'mongoPoolStats was forwarded');
});

test('credentials in the connection string get a clear error', T, async (t) => {
  const pool = await startPool(t);
  const uri = `${pool.socketUri.replace('mongodb://', 'mongodb://someone:secret@')}/?authSource=admin`;
  const c = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000, connectTimeoutMS: 5_000, socketTimeoutMS: 10_000 });
  t.after(() => c.close(true));
  await assert.rejects(c.db('admin').command({ ping: 1 }),
    (e) => /remove credentials from the connection string/.test(String(e) + String(e.cause ?? '')));
});
