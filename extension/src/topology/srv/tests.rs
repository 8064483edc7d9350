use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::config::uri;

type Zone = HashMap<(String, RecordType), Vec<RData>>;

/// A tiny authoritative DNS responder on 127.0.0.1 (UDP and TCP on the same port).
struct Responder {
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn answer(zone: &Zone, query: &[u8]) -> Vec<u8> {
    let request = Message::from_vec(query).unwrap();
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let mut found = false;
    for q in request.queries() {
        response.add_query(q.clone());
        let key = (q.name().to_ascii().to_ascii_lowercase(), q.query_type());
        if let Some(rdatas) = zone.get(&key) {
            for rdata in rdatas {
                response.add_answer(Record::from_rdata(q.name().clone(), 60, rdata.clone()));
                found = true;
            }
        }
    }
    let known_name = request.queries().iter().any(|q| {
        zone.keys()
            .any(|(n, _)| *n == q.name().to_ascii().to_ascii_lowercase())
    });
    response.set_response_code(if found || known_name {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    });
    response.to_vec().unwrap()
}

async fn responder(zone: Zone) -> Responder {
    let zone = Arc::new(zone);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let z = zone.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            let reply = answer(&z, &buf[..n]);
            let _ = udp.send_to(&reply, peer).await;
        }
    });
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                return;
            };
            let z = zone.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(len) = stream.read_u16().await else {
                        return;
                    };
                    let mut buf = vec![0; usize::from(len)];
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let reply = answer(&z, &buf);
                    let _ = stream.write_u16(reply.len() as u16).await;
                    let _ = stream.write_all(&reply).await;
                }
            });
        }
    });
    Responder {
        addr,
        tasks: vec![udp_task, tcp_task],
    }
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 0, port, Name::from_ascii(target).unwrap()))
}

fn txt(parts: &[&str]) -> RData {
    RData::TXT(TXT::new(parts.iter().map(|s| (*s).to_owned()).collect()))
}

const HOST: &str = "cluster0.abcde.mongodb.net";
const SRV_NAME: &str = "_mongodb._tcp.cluster0.abcde.mongodb.net.";

fn atlas_zone() -> Zone {
    let mut zone = Zone::new();
    zone.insert(
        (SRV_NAME.into(), RecordType::SRV),
        vec![
            srv(27017, "ac-abc-shard-00-00.abcde.mongodb.net."),
            srv(27017, "ac-abc-shard-00-01.abcde.mongodb.net."),
            srv(27017, "ac-abc-shard-00-02.abcde.mongodb.net."),
        ],
    );
    zone.insert(
        (format!("{HOST}."), RecordType::TXT),
        vec![txt(&["authSource=admin&replicaSet=atlas-xyz-shard-0"])],
    );
    zone
}

fn uri_options(uri: &str) -> UriOptions {
    uri::parse(uri).unwrap()
}

async fn discover(zone: Zone, uri: &str) -> Result<SeedList, SrvError> {
    let dns = responder(zone).await;
    let resolver = Resolver::new(Some(dns.addr)).unwrap();
    let opts = uri_options(uri);
    let Seeds::Srv { host, service_name } = &opts.seeds else {
        panic!("not an srv uri")
    };
    resolve_seedlist(&resolver, host, service_name, &opts).await
}

use crate::config::uri::Seeds;

#[tokio::test]
async fn atlas_replica_set_is_discovered() {
    let seeds = discover(
        atlas_zone(),
        &format!("mongodb+srv://{HOST}/?authSource=%24external"),
    )
    .await
    .unwrap();
    assert_eq!(seeds.hosts.len(), 3);
    assert_eq!(
        seeds.hosts[0].to_string(),
        "ac-abc-shard-00-00.abcde.mongodb.net:27017"
    );
    assert_eq!(seeds.replica_set.as_deref(), Some("atlas-xyz-shard-0"));
    assert_eq!(seeds.ignored_auth_source.as_deref(), Some("admin"));
}

#[tokio::test]
async fn uri_options_override_txt() {
    let seeds = discover(
        atlas_zone(),
        &format!("mongodb+srv://{HOST}/?replicaSet=mine"),
    )
    .await
    .unwrap();
    assert_eq!(seeds.replica_set.as_deref(), Some("mine"));
}

#[tokio::test]
async fn custom_service_name_is_queried() {
    let mut zone = Zone::new();
    zone.insert(
        ("_custom._tcp.c.example.com.".into(), RecordType::SRV),
        vec![srv(1234, "a.example.com.")],
    );
    let seeds = discover(zone, "mongodb+srv://c.example.com/?srvServiceName=custom")
        .await
        .unwrap();
    assert_eq!(
        seeds.hosts,
        vec![HostPort {
            host: "a.example.com".into(),
            port: 1234
        }]
    );
    assert_eq!(seeds.replica_set, None);
}

#[tokio::test]
async fn target_outside_the_parent_domain_is_rejected() {
    let mut zone = atlas_zone();
    zone.insert(
        (SRV_NAME.into(), RecordType::SRV),
        vec![srv(27017, "evil.attacker.example.")],
    );
    let e = discover(zone, &format!("mongodb+srv://{HOST}"))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("_mongodb._tcp.cluster0.abcde.mongodb.net"),
        "{text}"
    );
    assert!(
        text.contains("evil.attacker.example") && text.contains("abcde.mongodb.net"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_srv_records_name_the_record() {
    let e = discover(Zone::new(), &format!("mongodb+srv://{HOST}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SrvError::NoSrvRecords(n) if n.contains("_mongodb._tcp")),
        "{e}"
    );
}

#[tokio::test]
async fn more_than_one_txt_record_is_an_error() {
    let mut zone = atlas_zone();
    zone.insert(
        (format!("{HOST}."), RecordType::TXT),
        vec![txt(&["replicaSet=a"]), txt(&["authSource=admin"])],
    );
    let e = discover(zone, &format!("mongodb+srv://{HOST}"))
        .await
        .unwrap_err();
    assert!(matches!(e, SrvError::MultipleTxt { count: 2, .. }), "{e}");
}

#[tokio::test]
async fn txt_strings_of_one_record_are_concatenated() {
    let mut zone = atlas_zone();
    zone.insert(
        (format!("{HOST}."), RecordType::TXT),
        vec![txt(&["replicaSet=rs", "0&authSource=%24external"])],
    );
    let seeds = discover(zone, &format!("mongodb+srv://{HOST}"))
        .await
        .unwrap();
    assert_eq!(seeds.replica_set.as_deref(), Some("rs0"));
    assert_eq!(seeds.ignored_auth_source, None);
}

#[tokio::test]
async fn txt_with_other_options_or_load_balanced_is_an_error() {
    for record in [
        "ssl=false",
        "replicaSet=rs0&maxPoolSize=100",
        "loadBalanced=true",
        "loadBalanced=maybe",
        "replicaSet",
    ] {
        let mut zone = atlas_zone();
        zone.insert((format!("{HOST}."), RecordType::TXT), vec![txt(&[record])]);
        let e = discover(zone, &format!("mongodb+srv://{HOST}"))
            .await
            .unwrap_err();
        assert!(matches!(e, SrvError::TxtOption { .. }), "{record}: {e}");
    }
}

#[tokio::test]
async fn srv_max_hosts_picks_a_subset_and_conflicts_with_a_txt_replica_set() {
    let mut zone = Zone::new();
    zone.insert(
        ("_mongodb._tcp.shard.example.com.".into(), RecordType::SRV),
        (1..=5)
            .map(|i| srv(27016 + i, &format!("mongos{i}.example.com.")))
            .collect(),
    );
    let seeds = discover(
        zone.clone(),
        "mongodb+srv://shard.example.com/?srvMaxHosts=2",
    )
    .await
    .unwrap();
    assert_eq!(seeds.hosts.len(), 2);
    assert_ne!(seeds.hosts[0], seeds.hosts[1]);
    assert!(seeds.hosts.iter().all(|h| h.host.starts_with("mongos")));

    zone.insert(
        ("shard.example.com.".into(), RecordType::TXT),
        vec![txt(&["replicaSet=rs0"])],
    );
    let e = discover(zone, "mongodb+srv://shard.example.com/?srvMaxHosts=2")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("srvMaxHosts"), "{e}");
}

#[tokio::test]
async fn lookup_host_uses_the_configured_server_and_passes_ip_literals() {
    let mut zone = Zone::new();
    zone.insert(
        ("member.example.test.".into(), RecordType::A),
        vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 7)))],
    );
    let dns = responder(zone).await;
    let resolver = Resolver::new(Some(dns.addr)).unwrap();
    assert_eq!(
        resolver
            .lookup_host("member.example.test", 27017)
            .await
            .unwrap(),
        vec!["127.0.0.7:27017".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        resolver.lookup_host("::1", 5).await.unwrap(),
        vec!["[::1]:5".parse::<SocketAddr>().unwrap()]
    );
    let e = resolver
        .lookup_host("missing.example.test", 1)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.example.test"), "{e}");
}

#[test]
fn target_rules_for_short_host_names() {
    // Three or more labels: the parent domain.
    assert!(validate_target("s", "c.example.com", "a.example.com").is_ok());
    assert!(validate_target("s", "c.example.com", "a.b.example.com.").is_ok());
    assert!(validate_target("s", "c.example.com", "A.EXAMPLE.COM").is_ok());
    assert!(validate_target("s", "c.example.com", "example.com").is_err());
    assert!(validate_target("s", "c.example.com", "a.fakeexample.com").is_err());
    // Fewer than three: must end with the host and have more labels.
    assert!(validate_target("s", "example.com", "a.example.com").is_ok());
    assert!(validate_target("s", "example.com", "example.com").is_err());
    assert!(validate_target("s", "example.com", "a.other.com").is_err());
    assert!(validate_target("s", "localhost", "mongo.localhost").is_ok());
    assert!(validate_target("s", "localhost", "localhost").is_err());
}

#[test]
fn choose_hosts_keeps_all_when_unbounded_or_large_enough() {
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let all: Vec<HostPort> = (1..=4)
        .map(|i| HostPort {
            host: format!("h{i}"),
            port: 1,
        })
        .collect();
    for max in [0, 4, 10] {
        let mut hosts = all.clone();
        choose_hosts(&mut hosts, max, &mut rng);
        assert_eq!(hosts, all, "max={max}");
    }
    let mut hosts = all.clone();
    choose_hosts(&mut hosts, 3, &mut rng);
    assert_eq!(hosts.len(), 3);
    assert!(hosts.iter().all(|h| all.contains(h)));
}

#[test]
fn txt_parsing() {
    assert_eq!(parse_txt("n", &[]).unwrap(), TxtOptions::default());
    let t = parse_txt(
        "n",
        &["AUTHSOURCE=admin&replicaset=rs%30&loadBalanced=false".into()],
    )
    .unwrap();
    assert_eq!(t.auth_source.as_deref(), Some("admin"));
    assert_eq!(t.replica_set.as_deref(), Some("rs0"));
    assert!(!t.load_balanced);
}
