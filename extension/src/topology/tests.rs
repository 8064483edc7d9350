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
