//! atlas-sim with `--srv NAME --dns-port 0`: the SRV, TXT and A answers a `mongodb+srv://`
//! client resolves (asked with hickory-resolver, over UDP and TCP, at the start line's `dns`),
//! members that call themselves by those host names in `hello`, and a certificate valid for
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "atlas_support/wire_client.rs"]
mod wire_client;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bson::doc;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use mongo_pool_testkit::process::AtlasSim;
use wire_client::{Keys, Wire, ok, start_sim_with_principal};

const NAME: &str = "cluster0.sim.test";

fn resolver(sim: &AtlasSim, tcp_only: bool) -> TokioResolver {
    let addr: SocketAddr = sim
        .start
        .dns
        .as_deref()
        .expect("a dns address with --srv")
        .parse()
        .unwrap();
    let mut server = if tcp_only {
        NameServerConfig::tcp(addr.ip())
    } else {
        NameServerConfig::udp_and_tcp(addr.ip())
    };
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(5);
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .unwrap()
}

fn port_of(member: &str) -> u16 {
    member.rsplit_once(':').unwrap().1.parse().unwrap()
}

async fn srv_targets(resolver: &TokioResolver) -> Vec<(u16, String)> {
    let srv = resolver
        .srv_lookup(format!("_mongodb._tcp.{NAME}."))
        .await
        .unwrap();
    let mut targets: Vec<(u16, String)> = srv
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    targets.sort_by(|a, b| a.1.cmp(&b.1));
    targets
}

async fn txt(resolver: &TokioResolver) -> Vec<String> {
    let txt = resolver.txt_lookup(format!("{NAME}.")).await.unwrap();
    txt.answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn srv_txt_and_a_records_name_every_member_over_udp_and_tcp() {
    let sim = start_sim_with_principal(&["--srv", NAME, "--dns-port", "0"]).await;
    let srv_uri = sim.start.srv_uri.clone().expect("srv_uri with --srv");
    assert!(
        srv_uri.starts_with(&format!("mongodb+srv://{NAME}/?")),
        "{srv_uri}"
    );
    assert!(
        srv_uri.contains("authMechanism=MONGODB-AWS") && srv_uri.contains("tlsCAFile="),
        "{srv_uri}"
    );

    let expected: Vec<(u16, String)> = sim
        .start
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (port_of(m), format!("member{}.sim.test.", i + 1)))
        .collect();
    for tcp_only in [false, true] {
        let resolver = resolver(&sim, tcp_only);
        assert_eq!(
            srv_targets(&resolver).await,
            expected,
            "tcp_only={tcp_only}"
        );
        assert_eq!(
            txt(&resolver).await,
            vec!["authSource=%24external&replicaSet=sim"]
        );
        for (_, target) in &expected {
            let a = resolver.ipv4_lookup(target.as_str()).await.unwrap();
            let addrs: Vec<Ipv4Addr> = a
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            assert_eq!(addrs, vec![Ipv4Addr::LOCALHOST], "{target}");
        }
        assert!(
            resolver.ipv4_lookup("member9.sim.test.").await.is_err(),
            "unknown names do not resolve"
        );
    }
}

#[tokio::test]
async fn with_srv_members_call_themselves_by_their_dns_names_and_the_certificate_covers_them() {
    let sim = start_sim_with_principal(&["--srv", NAME, "--dns-port", "0"]).await;
    let names: Vec<String> = sim
        .start
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("member{}.sim.test:{}", i + 1, port_of(m)))
        .collect();
    // TLS verified for the DNS name a mongodb+srv client would use.
    let mut wire = Wire::connect_as(&sim, &sim.start.members[1], "member2.sim.test")
        .await
        .unwrap();
    let hello = wire.hello(None).await.unwrap();
    let hosts: Vec<&str> = hello
        .get_array("hosts")
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(hosts, names.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(hello.get_str("me").unwrap(), names[1]);
    assert_eq!(hello.get_str("primary").unwrap(), names[0]);
    assert!(ok(&wire.authenticate(&Keys::test()).await.unwrap()));
    let status = wire
        .command(doc! { "serverStatus": 1, "$db": "admin" })
        .await
        .unwrap();
    assert_eq!(status.get_str("host").unwrap(), names[1]);
    // The start line and /status keep the 127.0.0.1 keys.
    let control = sim.status().await.unwrap();
    assert_eq!(
        control["members"][&sim.start.members[1]]["host"],
        names[1].as_str()
    );
}

#[tokio::test]
async fn sharded_srv_txt_record_has_no_replica_set() {
    let sim =
        start_sim_with_principal(&["--topology", "sharded", "--srv", NAME, "--dns-port", "0"])
            .await;
    let resolver = resolver(&sim, false);
    assert_eq!(txt(&resolver).await, vec!["authSource=%24external"]);
    assert_eq!(srv_targets(&resolver).await.len(), 3);
}
