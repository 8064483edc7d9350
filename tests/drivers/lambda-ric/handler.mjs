// A Node.js Lambda handler as users write it, run by AWS's runtime interface client for Node
// (`aws-lambda-ric`) under lambda-sim, with mongo-pool as its extension: the MongoClient is made
// once, outside the handler, on mongo-pool's socket (no credentials), and reused by every
// invocation. tests/drivers/python/test_lambda_ric.py sends the events and checks the replies.
//
// Events: {"op": "insert", "id": N} inserts a note; {"op": "list"} returns the notes' ids (a
// cursor with batchSize 2); {"op": "transfer"} commits one transaction and aborts another;
// {"op": "stats"} returns mongoPoolStats' pinned counts.
import { MongoClient } from 'mongodb';

const socket = process.env.MONGO_POOL_SOCKET ?? '/tmp/mongo-pool.sock';
const client = new MongoClient(`mongodb://${encodeURIComponent(socket)}`, {
  appName: 'pool-drivers-lambda-ric',
  serverSelectionTimeoutMS: 10_000,
  connectTimeoutMS: 5_000,
  socketTimeoutMS: 30_000,
});
const notes = client.db('ric').collection('notes');

class Abandon extends Error {}

async function transfer() {
  const accounts = client.db('ric').collection('accounts');
  await accounts.insertMany([{ _id: 'alice', balance: 100 }, { _id: 'bob', balance: 0 }]);
  const session = client.startSession();
  try {
    await session.withTransaction(async () => {
      await accounts.updateOne({ _id: 'alice' }, { $inc: { balance: -30 } }, { session });
      await accounts.updateOne({ _id: 'bob' }, { $inc: { balance: 30 } }, { session });
    });
    await session.withTransaction(async () => {
      await accounts.updateOne({ _id: 'alice' }, { $inc: { balance: -1000 } }, { session });
      throw new Abandon('abandoned');
    }).catch((e) => {
      if (!(e instanceof Abandon)) throw e;
    });
  } finally {
    await session.endSession();
  }
  const balances = await accounts.find({}).sort({ _id: 1 }).toArray();
  return Object.fromEntries(balances.map((d) => [d._id, d.balance]));
}

export const handler = async (event) => {
  switch (event.op) {
    case 'insert':
      await notes.insertOne({ _id: event.id, text: `note ${event.id}` });
      return { inserted: event.id };
    case 'list':
      return { ids: (await notes.find({}, { batchSize: 2 }).sort({ _id: 1 }).toArray()).map((d) => d._id) };
    case 'transfer':
      return { balances: await transfer() };
    case 'stats': {
      const stats = await client.db('admin').command({ mongoPoolStats: 1 });
      return { pinned: stats.pinned };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(event.op)}`);
  }
};
