use super::*;
use bson::{Binary, RawDocumentBuf, rawdoc, spec::BinarySubtype};

fn req(body: &RawDocument) -> Request {
    Request::from_command(&Command::inspect(body).unwrap()).unwrap()
}

fn host(port: u16) -> HostPort {
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

fn lsid(n: u8) -> RawDocumentBuf {
    rawdoc! { "id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![n; 16] } }
}

fn reply_with_cursor(id: i64) -> RawDocumentBuf {
    rawdoc! { "cursor": { "id": id, "ns": "db.c", "firstBatch": [] }, "ok": 1.0 }
}

#[test]
fn reads_go_by_read_preference_and_default_to_primary() {
    let router = Router::default();
    let find = rawdoc! { "find": "c", "$db": "db" };
    assert_eq!(
        router.target(&req(&find)),
        Target::Select(ReadPreferenceMode::Primary)
    );
    let secondary =
        rawdoc! { "find": "c", "$db": "db", "$readPreference": { "mode": "secondary" } };
    assert_eq!(
        router.target(&req(&secondary)),
        Target::Select(ReadPreferenceMode::Secondary)
    );
}

#[test]
fn get_more_and_kill_cursors_reach_the_member_that_opened_the_cursor() {
    let router = Router::default();
    let find = rawdoc! { "find": "c", "$db": "db" };
    let reply = reply_with_cursor(77);
    router.learn(&req(&find), &Reply::inspect(&reply).unwrap(), &host(2));
    let get_more = rawdoc! { "getMore": 77_i64, "collection": "c", "$db": "db" };
    assert_eq!(router.target(&req(&get_more)), Target::Pinned(host(2)));
    let kill = rawdoc! { "killCursors": "c", "cursors": [77_i64], "$db": "db" };
    let kill_cmd = req(&kill);
    assert_eq!(router.target(&kill_cmd), Target::Pinned(host(2)));
    router.learn(
        &kill_cmd,
        &Reply::inspect(&rawdoc! { "ok": 1.0 }).unwrap(),
        &host(2),
    );
    assert_eq!(router.target(&req(&get_more)), Target::UnknownCursor(77));
}

#[test]
fn an_exhausted_cursor_is_forgotten() {
    let router = Router::default();
    router.learn(
        &req(&rawdoc! { "find": "c", "$db": "db" }),
        &Reply::inspect(&reply_with_cursor(5)).unwrap(),
        &host(1),
    );
    let get_more = rawdoc! { "getMore": 5_i64, "collection": "c", "$db": "db" };
    let last = rawdoc! { "cursor": { "id": 0_i64, "ns": "db.c", "nextBatch": [] }, "ok": 1.0 };
    router.learn(&req(&get_more), &Reply::inspect(&last).unwrap(), &host(1));
    assert_eq!(router.sizes().0, 0);
}

#[test]
fn on_a_sharded_cluster_a_transaction_is_pinned_from_start_to_commit() {
    let router = Router::default();
    router.set_sharded(true);
    let id = lsid(1);
    let start = rawdoc! { "insert": "c", "$db": "db", "lsid": id.clone(), "txnNumber": 3_i64, "autocommit": false, "startTransaction": true };
    let start_cmd = req(&start);
    assert_eq!(
        router.target(&start_cmd),
        Target::Select(ReadPreferenceMode::Primary)
    );
    router.learn(
        &start_cmd,
        &Reply::inspect(&rawdoc! { "n": 1, "ok": 1.0 }).unwrap(),
        &host(3),
    );
    let next = rawdoc! { "find": "c", "$db": "db", "lsid": id.clone(), "txnNumber": 3_i64, "autocommit": false };
    assert_eq!(router.target(&req(&next)), Target::Pinned(host(3)));
    let commit = rawdoc! { "commitTransaction": 1, "$db": "admin", "lsid": id.clone(), "txnNumber": 3_i64, "autocommit": false };
    let commit_cmd = req(&commit);
    assert_eq!(router.target(&commit_cmd), Target::Pinned(host(3)));
    router.learn(
        &commit_cmd,
        &Reply::inspect(&rawdoc! { "ok": 1.0 }).unwrap(),
        &host(3),
    );
    assert_eq!(router.sizes().1, 0);
}

#[test]
fn the_maps_are_bounded() {
    let mut map = ExpiringMap::new(Duration::from_secs(60), 3);
    let now = Instant::now();
    for i in 0..10 {
        map.insert(i, i, now);
    }
    assert_eq!(map.len(), 3);
    assert!(map.touch(&9, now).is_some());
    assert!(map.touch(&0, now).is_none());
}

#[test]
fn entries_expire() {
    let mut map = ExpiringMap::new(Duration::from_millis(10), 10);
    let now = Instant::now();
    map.insert(1, "a", now);
    assert!(map.touch(&1, now + Duration::from_millis(5)).is_some());
    assert!(map.touch(&1, now + Duration::from_millis(100)).is_none());
}

#[test]
fn sessions_are_remembered_once_and_forgotten_when_ended() {
    let router = Router::default();
    router.saw_session(SessionId([1; 16]));
    router.saw_session(SessionId([1; 16]));
    router.saw_session(SessionId([2; 16]));
    assert_eq!(router.live_sessions().len(), 2);
    router.ended_sessions(std::iter::once(SessionId([1; 16])));
    assert_eq!(router.live_sessions(), vec![SessionId([2; 16])]);
}

fn ok() -> RawDocumentBuf {
    rawdoc! { "ok": 1.0 }
}

fn find_in(session: RawDocumentBuf) -> RawDocumentBuf {
    rawdoc! { "find": "c", "$db": "db", "lsid": session }
}

#[test]
fn a_session_is_remembered_only_once_the_server_accepted_a_command_in_it() {
    let router = Router::default();
    let find = req(&find_in(lsid(1)));
    let refused = rawdoc! { "ok": 0.0, "code": 2, "errmsg": "no" };
    router.learn(&find, &Reply::inspect(&refused).unwrap(), &host(1));
    assert!(router.live_sessions().is_empty());
    router.learn(&find, &Reply::inspect(&ok()).unwrap(), &host(1));
    assert_eq!(router.live_sessions(), vec![SessionId([1; 16])]);
    assert_eq!(
        SessionId::from_lsid(&RawDocumentBuf::try_from(&SessionId([1; 16]).to_document()).unwrap()),
        Some(SessionId([1; 16])),
        "endSessions gets the lsid back as the driver sent it"
    );
}

/// `{a: {a: ... {} ...}}`, `levels` documents deep, built without recursion.
fn nested(levels: usize) -> RawDocumentBuf {
    let mut doc = vec![5u8, 0, 0, 0, 0];
    for _ in 1..levels {
        let len = u32::try_from(doc.len() + 8).unwrap();
        let mut outer = len.to_le_bytes().to_vec();
        outer.extend_from_slice(&[0x03, b'a', 0]);
        outer.extend_from_slice(&doc);
        outer.push(0);
        doc = outer;
    }
    RawDocumentBuf::from_bytes(doc).unwrap()
}

#[test]
fn an_lsid_not_shaped_like_a_drivers_is_forwarded_but_never_remembered() {
    let uuid = |n: usize| Binary {
        subtype: BinarySubtype::Uuid,
        bytes: vec![9; n],
    };
    let huge = "x".repeat(16 * 1024 * 1024);
    let odd: Vec<(&str, RawDocumentBuf)> = vec![
        ("16 MB", rawdoc! { "id": uuid(16), "pad": huge.as_str() }),
        ("10,000 levels", nested(10_000)),
        ("a 15-byte UUID", rawdoc! { "id": uuid(15) }),
        ("a 17-byte UUID", rawdoc! { "id": uuid(17) }),
        ("a string id", rawdoc! { "id": "0123456789abcdef" }),
        ("another field", rawdoc! { "id": uuid(16), "uid": 1 }),
        ("another key", rawdoc! { "ID": uuid(16) }),
        (
            "a legacy UUID",
            rawdoc! { "id": Binary { subtype: BinarySubtype::UuidOld, bytes: vec![9; 16] } },
        ),
        ("empty", rawdoc! {}),
    ];
    let router = Router::default();
    for (case, session) in odd {
        assert_eq!(SessionId::from_lsid(&session), None, "{case}");
        let body = rawdoc! {
            "insert": "c", "$db": "db", "lsid": session, "txnNumber": 1_i64,
            "autocommit": false, "startTransaction": true,
        };
        let request = req(&body);
        assert_eq!(request.lsid, None, "{case}");
        router.learn(&request, &Reply::inspect(&ok()).unwrap(), &host(1));
        let get_more =
            rawdoc! { "getMore": 1_i64, "collection": "c", "$db": "db", "lsid": nested(50) };
        router.learn(&req(&get_more), &Reply::inspect(&ok()).unwrap(), &host(1));
    }
    assert_eq!(router.sizes(), (0, 0, 0), "nothing was remembered");
    assert!(router.live_sessions().is_empty());
}

#[test]
fn on_a_replica_set_every_statement_and_the_commit_go_to_the_current_primary() {
    // The transactions spec: no pin on a replica set. After a failover the commit (or its
    // retry) must reach the new primary, never the member that started the transaction.
    let router = Router::default();
    router.set_sharded(false);
    let id = lsid(4);
    let start = rawdoc! { "insert": "c", "$db": "db", "lsid": id.clone(), "txnNumber": 1_i64, "autocommit": false, "startTransaction": true };
    let start_cmd = req(&start);
    assert_eq!(
        router.target(&start_cmd),
        Target::Select(ReadPreferenceMode::Primary)
    );
    router.learn(
        &start_cmd,
        &Reply::inspect(&rawdoc! { "n": 1, "ok": 1.0 }).unwrap(),
        &host(3),
    );
    assert_eq!(
        router.sizes().1,
        0,
        "a replica-set transaction is not pinned"
    );
    let next = rawdoc! { "find": "c", "$db": "db", "lsid": id.clone(), "txnNumber": 1_i64, "autocommit": false, "$readPreference": { "mode": "secondary" } };
    assert_eq!(
        router.target(&req(&next)),
        Target::Select(ReadPreferenceMode::Primary),
        "a statement of a transaction goes to the primary whatever its read preference says"
    );
    let commit = rawdoc! { "commitTransaction": 1, "$db": "admin", "lsid": id.clone(), "txnNumber": 1_i64, "autocommit": false };
    let abort = rawdoc! { "abortTransaction": 1, "$db": "admin", "lsid": id.clone(), "txnNumber": 1_i64, "autocommit": false };
    for end in [commit, abort] {
        assert_eq!(
            router.target(&req(&end)),
            Target::Select(ReadPreferenceMode::Primary),
            "{end:?}"
        );
    }
}

#[test]
fn kill_cursors_ids_are_grouped_by_the_member_that_owns_them() {
    let router = Router::default();
    let find = rawdoc! { "find": "c", "$db": "db" };
    for (id, port) in [(10_i64, 1), (20, 2), (11, 1)] {
        router.learn(
            &req(&find),
            &Reply::inspect(&reply_with_cursor(id)).unwrap(),
            &host(port),
        );
    }
    let (groups, unknown) = router.kill_cursors_by_member(&[10, 20, 99, 11]);
    assert_eq!(groups, vec![(host(1), vec![10, 11]), (host(2), vec![20])]);
    assert_eq!(unknown, vec![99]);
    router.forget_cursors(&[10, 20, 11]);
    assert_eq!(router.sizes().0, 0);
}
