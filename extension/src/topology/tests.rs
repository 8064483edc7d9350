use super::*;

#[test]
fn member_names_parse() {
    assert_eq!(
        parse_address("Member1.Sim.Test:27017"),
        Some(HostPort {
            host: "member1.sim.test".into(),
            port: 27017
        })
    );
    assert_eq!(
        parse_address("127.0.0.1:4000"),
        Some(HostPort {
            host: "127.0.0.1".into(),
            port: 4000
        })
    );
    assert_eq!(
        parse_address("[::1]:4000"),
        Some(HostPort {
            host: "::1".into(),
            port: 4000
        })
    );
    assert_eq!(
        parse_address("db.example.net"),
        Some(HostPort {
            host: "db.example.net".into(),
            port: 27017
        })
    );
    assert_eq!(parse_address(":27017"), None);
    assert_eq!(parse_address("host:notaport"), None);
}

#[test]
fn election_order_compares_election_id_then_set_version() {
    let oid = |n: u8| {
        Some(ObjectId::from_bytes([
            0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, n,
        ]))
    };
    assert!((oid(1), Some(9)) < (oid(2), Some(1)));
    assert!((oid(2), Some(1)) < (oid(2), Some(2)));
}

fn member(kind: ServerKind, max_wire: i32, session_minutes: Option<i32>) -> Arc<HelloReply> {
    Arc::new(HelloReply {
        kind,
        set_name: Some("rs".into()),
        hosts: Vec::new(),
        primary: None,
        me: None,
        election_id: None,
        set_version: None,
        min_wire_version: 0,
        max_wire_version: max_wire,
        max_bson_object_size: 16 * 1024 * 1024,
        max_message_size_bytes: 48_000_000,
        max_write_batch_size: 100_000,
        logical_session_timeout_minutes: session_minutes,
        connection_id: None,
    })
}

#[test]
fn the_downstream_hello_promises_what_every_data_bearing_member_supports() {
    use crate::topology::select::deployment_hello;
    // A rolling upgrade: the primary already on 8.0 (25), a secondary still on 7.0 (21).
    let hellos = [
        member(ServerKind::Primary, 25, Some(30)),
        member(ServerKind::Secondary, 21, Some(30)),
        // An arbiter holds no data: it does not lower what drivers may use.
        member(ServerKind::OtherMember, 13, None),
    ];
    let combined = deployment_hello(&hellos).expect("data-bearing members");
    assert_eq!(combined.max_wire_version, 21);
    assert_eq!(combined.logical_session_timeout_minutes, Some(30));
    let without_sessions = [
        member(ServerKind::Primary, 25, Some(30)),
        member(ServerKind::Secondary, 25, None),
    ];
    assert_eq!(
        deployment_hello(&without_sessions)
            .expect("members")
            .logical_session_timeout_minutes,
        None,
        "sessions only when every member supports them"
    );
    assert!(deployment_hello(&[member(ServerKind::OtherMember, 25, None)]).is_none());
}
