use super::*;

fn connector_without_tls() -> Connector {
    let config = Config::from_lookup(|name| match name {
        "MONGO_POOL_URI" => Some("mongodb://127.0.0.1:27017/?tls=false".to_owned()),
        _ => None,
    })
    .expect("a loopback seed without TLS is allowed");
    Connector::new(&config, |_| None, Arc::new(Metrics::default())).expect("connector builds")
}

#[test]
fn a_discovered_member_off_this_host_is_never_reached_without_tls() {
    // A replica set behind a loopback seed (a tunnel, a local proxy) may list members on
    // other hosts in `hosts`; without TLS, MONGODB-AWS would send them credentials in clear.
    // `open` asks this before it dials anything (checked here without dialling, so that a
    // regression cannot send a packet off this host).
    let connector = connector_without_tls();
    let remote = HostPort {
        host: "db.example.net".into(),
        port: 27017,
    };
    let resolved = ["127.0.0.1:27017", "192.0.2.10:27017"].map(|a| a.parse().expect("addr"));
    match connector.refuse_cleartext(&remote, &resolved) {
        Err(e @ ConnectError::Cleartext { .. }) => {
            let message = e.to_string();
            assert!(message.contains("192.0.2.10"), "{message}");
            assert!(message.contains("tls=true"), "{message}");
        }
        Err(other) => panic!("expected a refusal to connect in clear, got: {other}"),
        Ok(()) => panic!("a remote address would be dialled in clear"),
    }
    let loopback = ["127.0.0.1:27017", "[::1]:27017", "[::ffff:127.0.0.2]:27017"]
        .map(|a| a.parse().expect("addr"));
    assert!(connector.refuse_cleartext(&remote, &loopback).is_ok());
}

#[tokio::test]
async fn a_loopback_member_without_tls_is_dialled() {
    // Nothing listens on this port: the refusal must come from the network (TCP), not from
    // the cleartext rule.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let connector = connector_without_tls();
    let local = HostPort {
        host: "127.0.0.1".into(),
        port,
    };
    match connector.open(&local, 0).await {
        Err(ConnectError::Network { stage, .. }) => assert_eq!(stage, Stage::Tcp),
        Err(other) => panic!("expected a TCP refusal, got: {other}"),
        Ok(_) => panic!("something answered on a port nobody listens on"),
    }
}
