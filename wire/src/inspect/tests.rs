//! Inspection of command and reply bodies: every routing field, its accepted types, and the
//! `FieldType` error for each wrong one.

use bson::{RawDocumentBuf, rawdoc};

use super::*;

fn command(doc: &RawDocumentBuf) -> Command<'_> {
    Command::inspect(doc).unwrap()
}

fn field_type_of(doc: &RawDocumentBuf) -> &'static str {
    match Command::inspect(doc) {
        Err(WireError::FieldType { field, .. }) => field,
        other => panic!("expected FieldType, got {other:?}"),
    }
}

fn reply_field_type_of(doc: &RawDocumentBuf) -> &'static str {
    match Reply::inspect(doc) {
        Err(WireError::FieldType { field, .. }) => field,
        other => panic!("expected FieldType, got {other:?}"),
    }
}

#[test]
fn command_name_is_the_first_key_and_kind_follows_it() {
    let cases = [
        ("hello", CommandKind::Hello),
        ("isMaster", CommandKind::Hello),
        ("ismaster", CommandKind::Hello),
        ("saslStart", CommandKind::Auth),
        ("saslContinue", CommandKind::Auth),
        ("authenticate", CommandKind::Auth),
        ("logout", CommandKind::Logout),
        ("commitTransaction", CommandKind::CommitTransaction),
        ("abortTransaction", CommandKind::AbortTransaction),
        ("endSessions", CommandKind::EndSessions),
        ("find", CommandKind::Other),
        ("HELLO", CommandKind::Other),
        ("Ismaster", CommandKind::Other),
    ];
    for (name, kind) in cases {
        let mut doc = RawDocumentBuf::new();
        doc.append(<&bson::raw::CStr>::try_from(name).unwrap(), 1);
        doc.append(bson::raw::cstr!("$db"), "admin");
        let c = command(&doc);
        assert_eq!(c.name, name);
        assert_eq!(c.kind, kind, "{name}");
        assert_eq!(CommandKind::of(name), kind);
        assert_eq!(c.db, Some("admin"));
    }
}

#[test]
fn empty_command_is_missing_its_body() {
    assert!(matches!(
        Command::inspect(&rawdoc! {}),
        Err(WireError::MissingBody)
    ));
}

#[test]
fn defaults_when_fields_are_absent() {
    let doc = rawdoc! { "ping": 1 };
    let c = command(&doc);
    assert_eq!(c.db, None);
    assert_eq!(c.lsid, None);
    assert_eq!(c.txn_number, None);
    assert_eq!(c.autocommit, None);
    assert!(!c.start_transaction);
    assert_eq!(c.read_preference, None);
    assert_eq!(c.read_preference_mode().unwrap(), None);
    assert_eq!(c.get_more_cursor_id, None);
    assert_eq!(c.cursor_collection, None);
    assert_eq!(c.kill_cursor_ids, None);
    assert_eq!(c.kill_cursor_ids().unwrap(), Vec::<i64>::new());
    assert!(!c.hello_ok);
    assert!(!c.load_balanced);
    assert_eq!(c.topology_version, None);
    assert_eq!(c.max_await_time_ms, None);
    assert_eq!(c.max_time_ms, None);
    assert!(!c.in_transaction());
}

#[test]
fn session_and_transaction_fields_are_read() {
    let doc = rawdoc! {
        "insert": "c",
        "lsid": { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16] } },
        "txnNumber": 5_i64,
        "autocommit": false,
        "startTransaction": true,
        "$db": "test",
    };
    let c = command(&doc);
    let lsid = c.lsid.unwrap();
    assert!(lsid.get("id").unwrap().is_some());
    assert_eq!(c.txn_number, Some(5));
    assert_eq!(c.autocommit, Some(false));
    assert!(c.start_transaction);
    assert!(c.in_transaction());
    assert_eq!(c.db, Some("test"));
    // A retryable write: txnNumber without autocommit is not a transaction.
    assert!(!command(&rawdoc! { "insert": "c", "txnNumber": 1_i64 }).in_transaction());
    assert!(!command(&rawdoc! { "find": "c", "autocommit": false }).in_transaction());
    assert!(!command(&rawdoc! { "find": "c", "startTransaction": false }).start_transaction);
}

#[test]
fn txn_number_accepts_int32_int64_and_integral_double() {
    assert_eq!(
        command(&rawdoc! { "x": 1, "txnNumber": 7 }).txn_number,
        Some(7)
    );
    assert_eq!(
        command(&rawdoc! { "x": 1, "txnNumber": i64::MAX }).txn_number,
        Some(i64::MAX)
    );
    assert_eq!(
        command(&rawdoc! { "x": 1, "txnNumber": 9.0 }).txn_number,
        Some(9)
    );
    assert_eq!(
        command(&rawdoc! { "x": 1, "txnNumber": -3.0 }).txn_number,
        Some(-3)
    );
    for bad in [
        rawdoc! { "x": 1, "txnNumber": 1.5 },
        rawdoc! { "x": 1, "txnNumber": f64::NAN },
        rawdoc! { "x": 1, "txnNumber": f64::INFINITY },
        rawdoc! { "x": 1, "txnNumber": 1e19 },
        rawdoc! { "x": 1, "txnNumber": "1" },
        rawdoc! { "x": 1, "txnNumber": true },
    ] {
        assert_eq!(field_type_of(&bad), "txnNumber", "{bad:?}");
    }
}

#[test]
fn wrong_types_are_rejected_with_field_type() {
    let cases = [
        (rawdoc! { "find": "c", "$db": 1 }, "$db"),
        (rawdoc! { "find": "c", "lsid": "abc" }, "lsid"),
        (rawdoc! { "find": "c", "autocommit": 0 }, "autocommit"),
        (
            rawdoc! { "find": "c", "startTransaction": 1 },
            "startTransaction",
        ),
        (
            rawdoc! { "find": "c", "$readPreference": "secondary" },
            "$readPreference",
        ),
        (
            rawdoc! { "hello": 1, "topologyVersion": 1 },
            "topologyVersion",
        ),
        (
            rawdoc! { "hello": 1, "maxAwaitTimeMS": "10" },
            "maxAwaitTimeMS",
        ),
        (rawdoc! { "find": "c", "maxTimeMS": 2.5 }, "maxTimeMS"),
        (rawdoc! { "getMore": "abc", "collection": "c" }, "getMore"),
        (rawdoc! { "getMore": 1_i64, "collection": 5 }, "collection"),
        (
            rawdoc! { "killCursors": 1, "cursors": [1_i64] },
            "killCursors",
        ),
        (rawdoc! { "killCursors": "c", "cursors": 1_i64 }, "cursors"),
    ];
    for (doc, field) in cases {
        assert_eq!(field_type_of(&doc), field, "{doc:?}");
    }
    // `collection`/`cursors` are only routing fields of getMore/killCursors.
    assert!(Command::inspect(&rawdoc! { "find": "c", "collection": 5, "cursors": 1 }).is_ok());
}

#[test]
fn read_preference_and_each_mode_are_read() {
    let modes = [
        ("primary", ReadPreferenceMode::Primary),
        ("primaryPreferred", ReadPreferenceMode::PrimaryPreferred),
        ("secondary", ReadPreferenceMode::Secondary),
        ("secondaryPreferred", ReadPreferenceMode::SecondaryPreferred),
        ("nearest", ReadPreferenceMode::Nearest),
    ];
    for (name, mode) in modes {
        let doc =
            rawdoc! { "find": "c", "$readPreference": { "mode": name, "tags": [] }, "$db": "d" };
        let c = command(&doc);
        assert_eq!(c.read_preference.unwrap().get_str("mode").unwrap(), name);
        assert_eq!(c.read_preference_mode().unwrap(), Some(mode));
        assert_eq!(ReadPreferenceMode::parse(name), Some(mode));
    }
}

#[test]
fn bad_read_preference_mode_is_rejected() {
    for pref in [
        rawdoc! { "mode": "Secondary" },
        rawdoc! { "mode": "any" },
        rawdoc! { "mode": 1 },
        rawdoc! { "tags": [] },
    ] {
        let doc = rawdoc! { "find": "c", "$readPreference": pref };
        let c = command(&doc);
        assert!(
            matches!(
                c.read_preference_mode(),
                Err(WireError::FieldType {
                    field: "$readPreference.mode",
                    ..
                })
            ),
            "{doc:?}"
        );
    }
}

#[test]
fn get_more_cursor_id_and_collection_are_read() {
    let doc =
        rawdoc! { "getMore": 1234567890123_i64, "collection": "coll", "batchSize": 10, "$db": "d" };
    let c = command(&doc);
    assert_eq!(c.kind, CommandKind::GetMore);
    assert_eq!(c.get_more_cursor_id, Some(1_234_567_890_123));
    assert_eq!(c.cursor_collection, Some("coll"));
    assert_eq!(
        command(&rawdoc! { "getMore": 12, "collection": "c" }).get_more_cursor_id,
        Some(12)
    );
    let doc = rawdoc! { "getMore": 1_i64, "collection": "c", "maxAwaitTimeMS": 500 };
    let c = command(&doc);
    assert_eq!(c.max_await_time_ms, Some(500));
}

#[test]
fn kill_cursors_ids_and_collection_are_read() {
    let doc = rawdoc! { "killCursors": "coll", "cursors": [1_i64, 2, 3.0], "$db": "d" };
    let c = command(&doc);
    assert_eq!(c.kind, CommandKind::KillCursors);
    assert_eq!(c.cursor_collection, Some("coll"));
    assert_eq!(c.kill_cursor_ids().unwrap(), vec![1, 2, 3]);
    let doc = rawdoc! { "killCursors": "coll", "cursors": [1_i64, "x"] };
    assert!(matches!(
        command(&doc).kill_cursor_ids(),
        Err(WireError::FieldType {
            field: "cursors",
            ..
        })
    ));
}

#[test]
fn hello_ok_and_load_balanced_follow_server_truthiness() {
    let truthy_values = [
        rawdoc! { "v": true },
        rawdoc! { "v": 1 },
        rawdoc! { "v": 2_i64 },
        rawdoc! { "v": 1.0 },
        rawdoc! { "v": -0.5 },
        rawdoc! { "v": "yes" },
        rawdoc! { "v": {} },
    ];
    let falsy_values = [
        rawdoc! { "v": false },
        rawdoc! { "v": 0 },
        rawdoc! { "v": 0_i64 },
        rawdoc! { "v": 0.0 },
        rawdoc! { "v": null },
    ];
    for (values, expected) in [(&truthy_values[..], true), (&falsy_values[..], false)] {
        for v in values {
            let value = v.get("v").unwrap().unwrap();
            let doc = rawdoc! { "hello": 1, "helloOk": value, "loadBalanced": value };
            let c = command(&doc);
            assert_eq!(c.hello_ok, expected, "{v:?}");
            assert_eq!(c.load_balanced, expected, "{v:?}");
            assert_eq!(truthy(value), expected);
        }
    }
}

#[test]
fn topology_version_and_time_limits_are_read() {
    let doc = rawdoc! {
        "hello": 1,
        "topologyVersion": { "processId": bson::oid::ObjectId::new(), "counter": 3_i64 },
        "maxAwaitTimeMS": 10000,
        "maxTimeMS": 250_i64,
    };
    let c = command(&doc);
    assert_eq!(c.topology_version.unwrap().get_i64("counter").unwrap(), 3);
    assert_eq!(c.max_await_time_ms, Some(10_000));
    assert_eq!(c.max_time_ms, Some(250));
    assert_eq!(
        command(&rawdoc! { "find": "c", "maxTimeMS": 100.0 }).max_time_ms,
        Some(100)
    );
}

#[test]
fn reply_ok_accepts_double_int_and_bool() {
    for (doc, ok) in [
        (rawdoc! { "ok": 1.0 }, true),
        (rawdoc! { "ok": 1 }, true),
        (rawdoc! { "ok": 1_i64 }, true),
        (rawdoc! { "ok": true }, true),
        (rawdoc! { "ok": 0.0 }, false),
        (rawdoc! { "ok": 0 }, false),
        (rawdoc! { "ok": false }, false),
        (rawdoc! { "n": 1 }, false),
    ] {
        assert_eq!(Reply::inspect(&doc).unwrap().ok, ok, "{doc:?}");
    }
}

#[test]
fn reply_error_fields_and_labels_are_read() {
    let doc = rawdoc! {
        "ok": 0.0,
        "errmsg": "Authentication failed.",
        "code": 18,
        "codeName": "AuthenticationFailed",
        "errorLabels": ["RetryableWriteError", 5, "NoWritesPerformed"],
    };
    let r = Reply::inspect(&doc).unwrap();
    assert!(!r.ok);
    assert_eq!(r.code, Some(18));
    assert_eq!(r.code_name, Some("AuthenticationFailed"));
    assert_eq!(r.errmsg, Some("Authentication failed."));
    assert!(r.has_label("RetryableWriteError"));
    assert!(r.has_label("NoWritesPerformed"));
    assert!(!r.has_label("TransientTransactionError"));
    assert_eq!(
        r.labels().collect::<Vec<_>>(),
        vec!["RetryableWriteError", "NoWritesPerformed"]
    );
    // Code as a double or int64 that fits.
    assert_eq!(
        Reply::inspect(&rawdoc! { "ok": 0, "code": 91.0 })
            .unwrap()
            .code,
        Some(91)
    );
    assert_eq!(
        Reply::inspect(&rawdoc! { "ok": 0, "code": 43_i64 })
            .unwrap()
            .code,
        Some(43)
    );
    // No labels at all.
    let doc = rawdoc! { "ok": 1 };
    let r = Reply::inspect(&doc).unwrap();
    assert!(!r.has_label("RetryableWriteError"));
    assert_eq!(r.labels().count(), 0);
    assert_eq!(
        (r.code, r.code_name, r.errmsg, r.cursor_id),
        (None, None, None, None)
    );
}

#[test]
fn reply_cursor_id_write_concern_error_and_topology_version_are_read() {
    let doc = rawdoc! {
        "cursor": { "firstBatch": [], "id": 77_i64, "ns": "d.c" },
        "writeConcernError": { "code": 64, "errmsg": "waiting for replication timed out" },
        "topologyVersion": { "counter": 0_i64 },
        "ok": 1.0,
    };
    let r = Reply::inspect(&doc).unwrap();
    assert!(r.ok);
    assert_eq!(r.cursor_id, Some(77));
    assert_eq!(r.write_concern_error_code, Some(64));
    assert!(r.topology_version.is_some());
    // A cursor without an id, a writeConcernError without a code.
    let doc = rawdoc! { "cursor": {}, "writeConcernError": {}, "ok": 1 };
    let r = Reply::inspect(&doc).unwrap();
    assert_eq!(r.cursor_id, None);
    assert_eq!(r.write_concern_error_code, None);
}

#[test]
fn reply_wrong_types_are_rejected_with_field_type() {
    let cases = [
        (rawdoc! { "ok": 0, "code": "18" }, "code"),
        (rawdoc! { "ok": 0, "code": 3_000_000_000_i64 }, "code"),
        (rawdoc! { "ok": 0, "code": 1.5 }, "code"),
        (rawdoc! { "ok": 0, "codeName": 18 }, "codeName"),
        (rawdoc! { "ok": 0, "errmsg": false }, "errmsg"),
        (
            rawdoc! { "ok": 0, "errorLabels": "RetryableWriteError" },
            "errorLabels",
        ),
        (rawdoc! { "ok": 1, "cursor": 5 }, "cursor"),
        (rawdoc! { "ok": 1, "cursor": { "id": "5" } }, "cursor.id"),
        (
            rawdoc! { "ok": 1, "writeConcernError": [] },
            "writeConcernError",
        ),
        (
            rawdoc! { "ok": 1, "writeConcernError": { "code": "64" } },
            "writeConcernError.code",
        ),
        (rawdoc! { "ok": 1, "topologyVersion": 1 }, "topologyVersion"),
    ];
    for (doc, field) in cases {
        assert_eq!(reply_field_type_of(&doc), field, "{doc:?}");
    }
}

#[test]
fn malformed_bson_inside_a_well_framed_document_is_a_bson_error() {
    // {ping: <int32 with an unknown element type 0x7f>}: framing is valid, the element is not.
    let bytes = vec![12, 0, 0, 0, 0x7f, b'p', 0, 1, 0, 0, 0, 0];
    let doc = RawDocument::from_bytes(&bytes).unwrap();
    assert!(matches!(Command::inspect(doc), Err(WireError::Bson { .. })));
    assert!(matches!(Reply::inspect(doc), Err(WireError::Bson { .. })));
}
