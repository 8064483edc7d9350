<?php
// PHP's mongodb extension (Debian's php-mongodb, on libmongoc) through mongo-pool's Unix socket,
// one scenario per run, for tests/drivers/python/test_php_driver.py.
//
//   php compat.php SCENARIO SOCKET_URI CONTROL_URL
//
// SCENARIO is connect, crud, cursor, transaction or retry. SOCKET_URI is mongo-pool's socket
// (`mongodb://%2F...%2Fmongo-pool.sock`, no credentials); CONTROL_URL is atlas-sim's control API.
// It uses the extension's own API (MongoDB\Driver\*), which serverless frameworks build on. A
// scenario checks what a user would notice and exits 1 with a message on stderr when something is
// wrong; on success it prints one JSON object of facts, which the pytest side compares with
// atlas-sim's /status. Every wait is bounded by the connection-string timeouts below.

declare(strict_types=1);

use MongoDB\Driver\BulkWrite;
use MongoDB\Driver\Command;
use MongoDB\Driver\Exception\BulkWriteException;
use MongoDB\Driver\Exception\Exception as DriverException;
use MongoDB\Driver\Manager;
use MongoDB\Driver\Monitoring\CommandFailedEvent;
use MongoDB\Driver\Monitoring\CommandStartedEvent;
use MongoDB\Driver\Monitoring\CommandSubscriber;
use MongoDB\Driver\Monitoring\CommandSucceededEvent;
use MongoDB\Driver\Query;
use MongoDB\Driver\Server;

final class Failure extends RuntimeException
{
}

/** Counts the commands the driver starts (retries included). */
final class StartedCommands implements CommandSubscriber
{
    /** @var array<string, int> */
    public array $counts = [];

    public function commandStarted(CommandStartedEvent $event): void
    {
        $name = $event->getCommandName();
        $this->counts[$name] = ($this->counts[$name] ?? 0) + 1;
    }

    public function commandSucceeded(CommandSucceededEvent $event): void
    {
    }

    public function commandFailed(CommandFailedEvent $event): void
    {
    }

    public function count(string $name): int
    {
        return $this->counts[$name] ?? 0;
    }
}

function check(bool $ok, string $what): void
{
    if (!$ok) {
        throw new Failure($what);
    }
}

/** POST to atlas-sim's control API; returns its JSON reply as an array. */
function control_post(string $control, string $path, ?array $body = null): array
{
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Content-Type: application/json\r\n",
        'content' => $body === null ? '' : json_encode($body, JSON_THROW_ON_ERROR),
        'timeout' => 5,
        'ignore_errors' => true,
    ]]);
    $reply = @file_get_contents($control . $path, false, $context);
    check($reply !== false, "POST $path: no reply");
    $status = $http_response_header[0] ?? '';
    check(str_contains($status, ' 200 '), "POST $path: $status $reply");
    return json_decode($reply, true, 512, JSON_THROW_ON_ERROR);
}

function command(Manager $m, string $db, array $cmd, array $options = []): array
{
    $cursor = $m->executeCommand($db, new Command($cmd), $options);
    $cursor->setTypeMap(['root' => 'array', 'document' => 'array', 'array' => 'array']);
    return $cursor->toArray()[0];
}

function find(Manager $m, string $ns, array $filter = [], array $options = [], array $opts = []): array
{
    $cursor = $m->executeQuery($ns, new Query($filter, $options), $opts);
    $cursor->setTypeMap(['root' => 'array', 'document' => 'array', 'array' => 'array']);
    return $cursor->toArray();
}

function ids(array $docs): array
{
    return array_map(fn ($d) => $d['_id'], $docs);
}

function write(Manager $m, string $ns, callable $fill, array $options = []): MongoDB\Driver\WriteResult
{
    $bulk = new BulkWrite(['ordered' => true]);
    $fill($bulk);
    return $m->executeBulkWrite($ns, $bulk, $options);
}

// mongo-pool poses as a mongos and copies atlas-sim's wire versions, which libmongoc must accept.
function scenario_connect(Manager $m, string $control, StartedCommands $started): array
{
    $ping = command($m, 'admin', ['ping' => 1]);
    check($ping['ok'] == 1, 'ping: ' . json_encode($ping));
    $hello = command($m, 'admin', ['hello' => 1]);
    check(($hello['msg'] ?? null) === 'isdbgrid', 'hello does not say mongos: ' . json_encode($hello));
    $servers = $m->getServers();
    check(count($servers) === 1, 'servers: ' . count($servers));
    $server = $servers[0];
    check($server->getType() === Server::TYPE_MONGOS, 'server type ' . $server->getType() . ', want mongos');
    return ['minWireVersion' => $hello['minWireVersion'], 'maxWireVersion' => $hello['maxWireVersion'],
        'host' => $server->getHost()];
}

function scenario_crud(Manager $m, string $control, StartedCommands $started): array
{
    $ns = 'app.people';
    $r = write($m, $ns, function (BulkWrite $b) {
        $b->insert(['_id' => 'ada', 'born' => 1815]);
        $b->insert(['_id' => 'alan', 'born' => 1912]);
        $b->insert(['_id' => 'grace', 'born' => 1906]);
        $b->insert(['_id' => 'edsger', 'born' => 1930]);
    });
    check($r->getInsertedCount() === 4, 'inserted ' . $r->getInsertedCount());
    try {
        write($m, $ns, fn (BulkWrite $b) => $b->insert(['_id' => 'ada']));
        throw new Failure('a duplicate _id was accepted');
    } catch (BulkWriteException $e) {
        $errors = $e->getWriteResult()->getWriteErrors();
        check(count($errors) === 1 && $errors[0]->getCode() === 11000, 'duplicate _id: ' . $e->getMessage());
    }
    $ada = find($m, $ns, ['_id' => 'ada']);
    check(count($ada) === 1 && $ada[0]['born'] === 1815, 'find ada: ' . json_encode($ada));

    $r = write($m, $ns, fn (BulkWrite $b) => $b->update(['_id' => 'alan'], ['$set' => ['field' => 'computing']]));
    check($r->getMatchedCount() === 1 && $r->getModifiedCount() === 1, 'updateOne');
    $r = write($m, $ns, fn (BulkWrite $b) => $b->update(['born' => ['$lt' => 1920]], ['$set' => ['early' => true]], ['multi' => true]));
    check($r->getMatchedCount() === 3, 'updateMany matched ' . $r->getMatchedCount());
    $r = write($m, $ns, fn (BulkWrite $b) => $b->update(['_id' => 'edsger'], ['born' => 1930, 'country' => 'NL']));
    check($r->getModifiedCount() === 1, 'replace');
    $r = write($m, $ns, fn (BulkWrite $b) => $b->update(['_id' => 'barbara'], ['$set' => ['born' => 1939]], ['upsert' => true]));
    check($r->getUpsertedCount() === 1 && $r->getUpsertedIds() === [0 => 'barbara'], 'upsert');
    $r = write($m, $ns, fn (BulkWrite $b) => $b->delete(['_id' => 'grace'], ['limit' => 1]));
    check($r->getDeletedCount() === 1, 'deleteOne');

    $count = command($m, 'app', ['count' => 'people']);
    check($count['n'] === 4, 'count ' . json_encode($count));
    // A command that answers with a cursor is iterated by the extension itself.
    $agg = $m->executeCommand('app', new Command(['aggregate' => 'people', 'cursor' => new stdClass(), 'pipeline' => [
        ['$match' => ['early' => true]], ['$sort' => ['_id' => 1]], ['$project' => ['_id' => 1]],
    ]]));
    $agg->setTypeMap(['root' => 'array']);
    $early = ids($agg->toArray());
    check($early === ['ada', 'alan'], 'aggregate ' . json_encode($early));
    $edsger = find($m, $ns, ['_id' => 'edsger']);
    check($edsger[0] === ['_id' => 'edsger', 'born' => 1930, 'country' => 'NL'], 'replaced ' . json_encode($edsger));
    return ['ids' => ids(find($m, $ns, [], ['sort' => ['_id' => 1]]))];
}

// 1,000 documents read back in batches of 7: one find, then getMores on one cursor.
function scenario_cursor(Manager $m, string $control, StartedCommands $started): array
{
    write($m, 'app.items', function (BulkWrite $b) {
        for ($i = 0; $i < 1000; $i++) {
            $b->insert(['_id' => $i, 'pad' => 'x']);
        }
    });
    $cursor = $m->executeQuery('app.items', new Query([], ['sort' => ['_id' => 1], 'batchSize' => 7]));
    $cursor->setTypeMap(['root' => 'array']);
    $next = 0;
    foreach ($cursor as $doc) {
        check($doc['_id'] === $next, "cursor out of order: want $next, got " . json_encode($doc));
        $next++;
    }
    check($next === 1000, "cursor ended after $next documents, want 1000");
    return ['documents' => $next, 'getMores' => $started->count('getMore')];
}

function balances(Manager $m, array $opts = []): array
{
    $out = [];
    foreach (find($m, 'bank.accounts', [], ['sort' => ['_id' => 1]], $opts) as $d) {
        $out[$d['_id']] = $d['balance'];
    }
    return $out;
}

// A committed transfer, then two aborted transactions that must leave nothing behind.
function scenario_transaction(Manager $m, string $control, StartedCommands $started): array
{
    write($m, 'bank.accounts', function (BulkWrite $b) {
        $b->insert(['_id' => 'alice', 'balance' => 100]);
        $b->insert(['_id' => 'bob', 'balance' => 0]);
    });
    command($m, 'bank', ['create' => 'log']);

    $s = $m->startSession();
    $s->startTransaction();
    $in = ['session' => $s];
    write($m, 'bank.accounts', function (BulkWrite $b) {
        $b->update(['_id' => 'alice'], ['$inc' => ['balance' => -30]]);
        $b->update(['_id' => 'bob'], ['$inc' => ['balance' => 30]]);
    }, $in);
    write($m, 'bank.log', fn (BulkWrite $b) => $b->insert(['_id' => 't1', 'amount' => 30]), $in);
    check(balances($m, $in) === ['alice' => 70, 'bob' => 30], 'inside the committed transaction');
    $s->commitTransaction();
    check(balances($m) === ['alice' => 70, 'bob' => 30], 'after commit: ' . json_encode(balances($m)));

    $s->startTransaction();
    write($m, 'bank.accounts', fn (BulkWrite $b) => $b->update(['_id' => 'alice'], ['$inc' => ['balance' => -1000]]), $in);
    write($m, 'bank.log', fn (BulkWrite $b) => $b->insert(['_id' => 't2', 'amount' => 1000]), $in);
    check(balances($m, $in)['alice'] === -930, 'inside the aborted transaction');
    $s->abortTransaction();

    $s->startTransaction();
    write($m, 'bank.log', fn (BulkWrite $b) => $b->insert(['_id' => 't3']), $in);
    $s->abortTransaction();
    $s->endSession();

    check(balances($m) === ['alice' => 70, 'bob' => 30], 'after the aborts: ' . json_encode(balances($m)));
    $log = ids(find($m, 'bank.log', [], ['sort' => ['_id' => 1]]));
    check($log === ['t1'], 'the log holds ' . json_encode($log) . ', want only t1 (t2, t3 were aborted)');
    $stats = command($m, 'admin', ['mongoPoolStats' => 1]);
    return ['log' => $log, 'pinned' => $stats['pinned'],
        'commits' => $started->count('commitTransaction'), 'aborts' => $started->count('abortTransaction')];
}

// One insert whose first attempt fails with a retryable error (the driver must retry once and
// succeed), then 200 inserts with the primary stepping down after the first 100.
function scenario_retry(Manager $m, string $control, StartedCommands $started): array
{
    $ns = 'app.retry';
    control_post($control, '/failpoint', [
        'configureFailPoint' => 'failCommand', 'mode' => ['times' => 1],
        'data' => ['failCommands' => ['insert'], 'errorCode' => 91, 'errorLabels' => ['RetryableWriteError']],
    ]);
    $before = $started->count('insert');
    write($m, $ns, fn (BulkWrite $b) => $b->insert(['_id' => 'failpoint']));
    $attempts = $started->count('insert') - $before;
    check($attempts === 2, "the fail-point insert took $attempts attempts, want 2 (one retry)");

    $loopStart = $started->count('insert');
    $acked = [];
    $failed = [];
    $reply = null;
    for ($i = 0; $i < 200; $i++) {
        if ($i === 100) {
            $reply = control_post($control, '/stepdown');
        }
        try {
            write($m, $ns, fn (BulkWrite $b) => $b->insert(['_id' => $i, 'seq' => $i]));
            $acked[] = $i;
        } catch (DriverException $e) {
            $failed[$i] = get_class($e) . ': ' . $e->getMessage();
        }
    }
    check(count($failed) <= 1, count($failed) . ' inserts failed across the stepdown (at most 1 may): ' . json_encode($failed));
    $stored = ids(find($m, $ns, ['seq' => ['$exists' => true]]));
    check(count($stored) === count(array_unique($stored)), 'an insert was stored twice');
    check(array_diff($acked, $stored) === [], 'acknowledged but not stored: ' . json_encode(array_values(array_diff($acked, $stored))));
    $unexplained = array_diff($stored, $acked, array_keys($failed));
    check($unexplained === [], 'stored but neither acknowledged nor failed: ' . json_encode(array_values($unexplained)));
    return ['acked' => count($acked), 'failed' => (object) $failed, 'stored' => count($stored),
        'newPrimary' => $reply['primary'] ?? null, 'failpointAttempts' => $attempts,
        'stepdownAttempts' => $started->count('insert') - $loopStart];
}

function main(array $argv): int
{
    if (count($argv) !== 4) {
        fwrite(STDERR, "usage: php compat.php connect|crud|cursor|transaction|retry SOCKET_URI CONTROL_URL\n");
        return 2;
    }
    [, $scenario, $uri, $control] = $argv;
    $run = 'scenario_' . $scenario;
    if (!in_array($scenario, ['connect', 'crud', 'cursor', 'transaction', 'retry'], true)) {
        fwrite(STDERR, "unknown scenario $scenario\n");
        return 2;
    }
    $started = new StartedCommands();
    try {
        $m = new Manager($uri, ['appname' => 'pool-drivers-php', 'serverSelectionTimeoutMS' => 10000,
            'connectTimeoutMS' => 5000, 'socketTimeoutMS' => 60000]);
        $m->addSubscriber($started);
        $facts = $run($m, $control, $started);
    } catch (Throwable $e) {
        fwrite(STDERR, "FAIL $scenario: " . get_class($e) . ': ' . $e->getMessage() . "\n");
        return 1;
    }
    $facts['extension'] = phpversion('mongodb');
    $facts['php'] = PHP_VERSION;
    echo json_encode($facts, JSON_THROW_ON_ERROR), "\n";
    return 0;
}

exit(main($argv));
