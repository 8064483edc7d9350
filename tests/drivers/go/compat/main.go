// Command compat drives the Go driver (go.mongodb.org/mongo-driver, Debian's packaged release)
// through mongo-pool's Unix socket, one scenario per run, for tests/drivers/python/test_go_driver.py.
//
//	compat SCENARIO SOCKET_URI CONTROL_URL
//
// SCENARIO is connect, crud, cursor, transaction or retry. SOCKET_URI is mongo-pool's socket
// (`mongodb://%2F...%2Fmongo-pool.sock`, no credentials); CONTROL_URL is atlas-sim's control API.
// A scenario checks what a user of the driver would notice and exits 1 with a message on stderr
// when something is wrong; on success it prints one JSON object of facts on stdout, which the
// pytest side compares with atlas-sim's /status. Every operation is bounded by a context deadline.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/version"
)

// scenarioTimeout bounds a whole scenario; the pytest side bounds the process as well.
const scenarioTimeout = 90 * time.Second

type facts map[string]interface{}

type scenario func(ctx context.Context, env *env) (facts, error)

// env is what a scenario works with: a connected client, the control API, and counts of the
// commands the driver started (from its command monitor).
type env struct {
	client  *mongo.Client
	control string
	mu      sync.Mutex
	started map[string]int
}

func (e *env) startedCount(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started[name]
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: compat connect|crud|cursor|transaction|retry SOCKET_URI CONTROL_URL")
		os.Exit(2)
	}
	scenarios := map[string]scenario{
		"connect":     connectScenario,
		"crud":        crudScenario,
		"cursor":      cursorScenario,
		"transaction": transactionScenario,
		"retry":       retryScenario,
	}
	run, ok := scenarios[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown scenario %q\n", os.Args[1])
		os.Exit(2)
	}
	out, err := start(os.Args[2], os.Args[3], run)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	out["driver"] = version.Driver
	line, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %s: facts do not encode: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}

func start(uri, control string, run scenario) (facts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	e := &env{control: control, started: map[string]int{}}
	monitor := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		e.mu.Lock()
		e.started[ev.CommandName]++
		e.mu.Unlock()
	}}
	opts := options.Client().ApplyURI(uri).
		SetAppName("pool-drivers-go").
		SetServerSelectionTimeout(10 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetSocketTimeout(60 * time.Second).
		SetMonitor(monitor)
	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	e.client = client
	return run(ctx, e)
}

// post calls atlas-sim's control API and decodes its JSON reply.
func post(ctx context.Context, control, path string, body interface{}) (map[string]interface{}, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, control+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	var reply map[string]interface{}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return nil, fmt.Errorf("POST %s: reply: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %d %v", path, resp.StatusCode, reply)
	}
	return reply, nil
}

// connectScenario: ping and hello through the socket; mongo-pool poses as a mongos and copies
// atlas-sim's wire versions, which this driver must accept.
func connectScenario(ctx context.Context, e *env) (facts, error) {
	if err := e.client.Ping(ctx, nil); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	var hello bson.M
	if err := e.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	if hello["msg"] != "isdbgrid" {
		return nil, fmt.Errorf("hello does not say mongos (msg isdbgrid): %v", hello)
	}
	names, err := e.client.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("listDatabases: %w", err)
	}
	return facts{"minWireVersion": hello["minWireVersion"], "maxWireVersion": hello["maxWireVersion"],
		"databases": len(names)}, nil
}

// crudScenario: insert, find, update, replace, delete, count and aggregate, each checked.
func crudScenario(ctx context.Context, e *env) (facts, error) {
	coll := e.client.Database("app").Collection("people")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "ada"}, {Key: "born", Value: 1815}}); err != nil {
		return nil, fmt.Errorf("insertOne: %w", err)
	}
	many, err := coll.InsertMany(ctx, []interface{}{
		bson.D{{Key: "_id", Value: "alan"}, {Key: "born", Value: 1912}},
		bson.D{{Key: "_id", Value: "grace"}, {Key: "born", Value: 1906}},
		bson.D{{Key: "_id", Value: "edsger"}, {Key: "born", Value: 1930}},
	})
	if err != nil || len(many.InsertedIDs) != 3 {
		return nil, fmt.Errorf("insertMany: %v %v", many, err)
	}
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "ada"}})
	var we mongo.WriteException
	if !errors.As(err, &we) || !we.HasErrorCode(11000) {
		return nil, fmt.Errorf("a duplicate _id: want E11000, got %v", err)
	}
	var ada bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "ada"}}).Decode(&ada); err != nil || ada["born"] != int32(1815) {
		return nil, fmt.Errorf("findOne ada: %v %v", ada, err)
	}
	upd, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "alan"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "field", Value: "computing"}}}})
	if err != nil || upd.MatchedCount != 1 || upd.ModifiedCount != 1 {
		return nil, fmt.Errorf("updateOne: %+v %v", upd, err)
	}
	upd, err = coll.UpdateMany(ctx, bson.D{{Key: "born", Value: bson.D{{Key: "$lt", Value: 1920}}}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "born", Value: 0}}}, {Key: "$set", Value: bson.D{{Key: "early", Value: true}}}})
	if err != nil || upd.MatchedCount != 3 {
		return nil, fmt.Errorf("updateMany: %+v %v", upd, err)
	}
	rep, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "edsger"}}, bson.D{{Key: "born", Value: 1930}, {Key: "country", Value: "NL"}})
	if err != nil || rep.ModifiedCount != 1 {
		return nil, fmt.Errorf("replaceOne: %+v %v", rep, err)
	}
	ups, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "barbara"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "born", Value: 1939}}}}, options.Update().SetUpsert(true))
	if err != nil || ups.UpsertedID != "barbara" {
		return nil, fmt.Errorf("upsert: %+v %v", ups, err)
	}
	del, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "grace"}})
	if err != nil || del.DeletedCount != 1 {
		return nil, fmt.Errorf("deleteOne: %+v %v", del, err)
	}
	n, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil || n != 4 {
		return nil, fmt.Errorf("countDocuments: %d %v", n, err)
	}
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "early", Value: true}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	var early []bson.M
	if err := cur.All(ctx, &early); err != nil {
		return nil, fmt.Errorf("aggregate results: %w", err)
	}
	got := ids(early)
	if !reflect.DeepEqual(got, []interface{}{"ada", "alan"}) {
		return nil, fmt.Errorf("aggregate: want [ada alan], got %v", got)
	}
	cur, err = coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	var all []bson.M
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("find results: %w", err)
	}
	return facts{"ids": ids(all)}, nil
}

func ids(docs []bson.M) []interface{} {
	out := make([]interface{}, 0, len(docs))
	for _, d := range docs {
		out = append(out, d["_id"])
	}
	return out
}

// cursorScenario: 1,000 documents read back in batches of 7 (one find, then getMores).
func cursorScenario(ctx context.Context, e *env) (facts, error) {
	coll := e.client.Database("app").Collection("items")
	docs := make([]interface{}, 0, 1000)
	for i := 0; i < 1000; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: "x"}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		return nil, fmt.Errorf("insertMany: %w", err)
	}
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(7).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	defer cur.Close(ctx)
	next := int32(0)
	for cur.Next(ctx) {
		var d struct {
			ID int32 `bson:"_id"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		if d.ID != next {
			return nil, fmt.Errorf("cursor out of order: want %d, got %d", next, d.ID)
		}
		next++
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("cursor after %d documents: %w", next, err)
	}
	if next != 1000 {
		return nil, fmt.Errorf("cursor ended after %d documents, want 1000", next)
	}
	return facts{"documents": next, "getMores": e.startedCount("getMore")}, nil
}

// transactionScenario: a committed transfer (withTransaction), then an aborted transaction
// (the callback fails) and an explicit abort, neither of which leaves anything behind.
func transactionScenario(ctx context.Context, e *env) (facts, error) {
	db := e.client.Database("bank")
	accounts := db.Collection("accounts")
	logs := db.Collection("log")
	if _, err := accounts.InsertMany(ctx, []interface{}{
		bson.D{{Key: "_id", Value: "alice"}, {Key: "balance", Value: 100}},
		bson.D{{Key: "_id", Value: "bob"}, {Key: "balance", Value: 0}},
	}); err != nil {
		return nil, fmt.Errorf("insertMany: %w", err)
	}
	if err := db.CreateCollection(ctx, "log"); err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	sess, err := e.client.StartSession()
	if err != nil {
		return nil, fmt.Errorf("startSession: %w", err)
	}
	defer sess.EndSession(ctx)

	res, err := sess.WithTransaction(ctx, func(sc mongo.SessionContext) (interface{}, error) {
		if _, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "alice"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: -30}}}}); err != nil {
			return nil, err
		}
		if _, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "bob"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: 30}}}}); err != nil {
			return nil, err
		}
		if _, err := logs.InsertOne(sc, bson.D{{Key: "_id", Value: "t1"}, {Key: "amount", Value: 30}}); err != nil {
			return nil, err
		}
		return "committed", nil
	})
	if err != nil || res != "committed" {
		return nil, fmt.Errorf("committed transaction: %v %v", res, err)
	}
	if err := balances(ctx, accounts, 70, 30); err != nil {
		return nil, fmt.Errorf("after commit: %w", err)
	}

	abandon := errors.New("abandon")
	_, err = sess.WithTransaction(ctx, func(sc mongo.SessionContext) (interface{}, error) {
		if _, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "alice"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: -1000}}}}); err != nil {
			return nil, err
		}
		if _, err := logs.InsertOne(sc, bson.D{{Key: "_id", Value: "t2"}, {Key: "amount", Value: 1000}}); err != nil {
			return nil, err
		}
		var inside bson.M
		if err := accounts.FindOne(sc, bson.D{{Key: "_id", Value: "alice"}}).Decode(&inside); err != nil {
			return nil, err
		}
		if inside["balance"] != int32(-930) {
			return nil, fmt.Errorf("inside the transaction alice has %v, want -930", inside["balance"])
		}
		return nil, abandon
	})
	if !errors.Is(err, abandon) {
		return nil, fmt.Errorf("an abandoned transaction: want the callback's error, got %v", err)
	}

	if err := sess.StartTransaction(); err != nil {
		return nil, fmt.Errorf("startTransaction: %w", err)
	}
	if err := mongo.WithSession(ctx, sess, func(sc mongo.SessionContext) error {
		_, err := logs.InsertOne(sc, bson.D{{Key: "_id", Value: "t3"}})
		return err
	}); err != nil {
		return nil, fmt.Errorf("insert in an explicit transaction: %w", err)
	}
	if err := sess.AbortTransaction(ctx); err != nil {
		return nil, fmt.Errorf("abortTransaction: %w", err)
	}

	if err := balances(ctx, accounts, 70, 30); err != nil {
		return nil, fmt.Errorf("after the aborts: %w", err)
	}
	cur, err := logs.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find log: %w", err)
	}
	var entries []bson.M
	if err := cur.All(ctx, &entries); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	if !reflect.DeepEqual(ids(entries), []interface{}{"t1"}) {
		return nil, fmt.Errorf("the log holds %v, want only t1 (the aborted t2, t3 must be gone)", ids(entries))
	}
	var stats bson.M
	if err := e.client.Database("admin").RunCommand(ctx, bson.D{{Key: "mongoPoolStats", Value: 1}}).Decode(&stats); err != nil {
		return nil, fmt.Errorf("mongoPoolStats: %w", err)
	}
	return facts{"log": ids(entries), "pinned": stats["pinned"],
		"commits": e.startedCount("commitTransaction"), "aborts": e.startedCount("abortTransaction")}, nil
}

func balances(ctx context.Context, accounts *mongo.Collection, alice, bob int32) error {
	for id, want := range map[string]int32{"alice": alice, "bob": bob} {
		var d bson.M
		if err := accounts.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		if d["balance"] != want {
			return fmt.Errorf("%s has %v, want %d", id, d["balance"], want)
		}
	}
	return nil
}

// retryScenario: one insert whose first attempt fails with a retryable error (a fail point:
// the driver must retry it once and succeed), then 200 inserts with retryWrites while atlas-sim's
// primary steps down halfway. Every acknowledged insert is stored exactly once.
func retryScenario(ctx context.Context, e *env) (facts, error) {
	coll := e.client.Database("app").Collection("retry")
	if _, err := post(ctx, e.control, "/failpoint", bson.M{
		"configureFailPoint": "failCommand", "mode": bson.M{"times": 1},
		"data": bson.M{"failCommands": []string{"insert"}, "errorCode": 91, "errorLabels": []string{"RetryableWriteError"}},
	}); err != nil {
		return nil, err
	}
	before := e.startedCount("insert")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "failpoint"}}); err != nil {
		return nil, fmt.Errorf("an insert failed once with RetryableWriteError was not retried: %w", err)
	}
	attempts := e.startedCount("insert") - before
	if attempts != 2 {
		return nil, fmt.Errorf("the fail-point insert took %d attempts, want 2 (one retry)", attempts)
	}

	var halfway sync.WaitGroup
	halfway.Add(1)
	var stepdown atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		halfway.Wait()
		reply, err := post(ctx, e.control, "/stepdown", nil)
		if err != nil {
			stepdown.Store(err.Error())
			return
		}
		stepdown.Store(reply)
	}()
	loopStart := e.startedCount("insert")
	acked := []int{}
	failed := map[int]string{}
	for i := 0; i < 200; i++ {
		if i == 100 {
			halfway.Done()
		}
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "seq", Value: i}}); err != nil {
			failed[i] = err.Error()
		} else {
			acked = append(acked, i)
		}
		if i >= 100 {
			time.Sleep(5 * time.Millisecond) // keep writing while the election happens
		}
	}
	<-done
	loopAttempts := e.startedCount("insert") - loopStart
	reply, ok := stepdown.Load().(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("stepdown: %v", stepdown.Load())
	}
	if len(failed) > 1 {
		return nil, fmt.Errorf("%d inserts failed across the stepdown (at most 1 may): %v", len(failed), failed)
	}
	cur, err := coll.Find(ctx, bson.D{{Key: "seq", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	var stored []struct {
		ID int `bson:"_id"`
	}
	if err := cur.All(ctx, &stored); err != nil {
		return nil, fmt.Errorf("find results: %w", err)
	}
	seen := map[int]bool{}
	for _, d := range stored {
		if seen[d.ID] {
			return nil, fmt.Errorf("insert %d stored twice", d.ID)
		}
		seen[d.ID] = true
	}
	for _, i := range acked {
		if !seen[i] {
			return nil, fmt.Errorf("acknowledged insert %d is not stored", i)
		}
	}
	for i := range seen {
		if _, f := failed[i]; !f && !contains(acked, i) {
			return nil, fmt.Errorf("insert %d stored but neither acknowledged nor failed", i)
		}
	}
	return facts{"acked": len(acked), "failed": failed, "stored": len(stored),
		"newPrimary": reply["primary"], "failpointAttempts": attempts, "stepdownAttempts": loopAttempts}, nil
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
