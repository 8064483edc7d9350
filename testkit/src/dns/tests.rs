use super::*;
use hickory_proto::op::Query;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

const SRV_NAME: &str = "_mongodb._tcp.cluster0.sim.test";

fn zone() -> Zone {
    Zone::new()
        .with_srv(
            SRV_NAME,
            vec![
                SrvTarget::new("cluster0-shard-00-00.sim.test", 27017),
                SrvTarget {
                    priority: 1,
                    weight: 5,
                    port: 27018,
                    target: "cluster0-shard-00-01.sim.test.".into(),
                },
            ],
        )
        .with_txt(
            "cluster0.sim.test",
            vec!["authSource=$external&replicaSet=atlas-sim".into()],
        )
        .with_a("cluster0-shard-00-00.sim.test", Ipv4Addr::LOCALHOST)
        .with_a("cluster0-shard-00-01.sim.test", Ipv4Addr::new(127, 0, 0, 2))
}

fn resolver(addr: SocketAddr, tcp_only: bool) -> anyhow::Result<TokioResolver> {
    let mut server = if tcp_only {
        NameServerConfig::tcp(addr.ip())
    } else {
        NameServerConfig::udp_and_tcp(addr.ip())
    };
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = std::time::Duration::from_secs(2);
    Ok(
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()?,
    )
}

fn query_bytes(name: &str, record_type: RecordType) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = 0x1234;
    message.add_query(Query::query(Name::from_ascii(name)?, record_type));
    Ok(message.to_vec()?)
}

/// The reply `records` gives to `query` over `transport`, decoded.
fn ask(records: &Records, query: &[u8], transport: Transport) -> anyhow::Result<Message> {
    let reply = records
        .answer(query, transport)
        .ok_or_else(|| anyhow::anyhow!("no reply"))?;
    Ok(Message::from_vec(&reply)?)
}

async fn resolves_every_record_type(tcp_only: bool) -> anyhow::Result<()> {
    let server = serve("127.0.0.1:0".parse()?, zone()).await?;
    let resolver = resolver(server.local_addr(), tcp_only)?;

    let srv = resolver.srv_lookup(format!("{SRV_NAME}.")).await?;
    let mut targets: Vec<(u16, u16, u16, String)> = srv
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.priority, srv.weight, srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        vec![
            (0, 0, 27017, "cluster0-shard-00-00.sim.test.".to_string()),
            (1, 5, 27018, "cluster0-shard-00-01.sim.test.".to_string()),
        ]
    );

    let txt = resolver.txt_lookup("Cluster0.SIM.test.").await?;
    let texts: Vec<String> = txt
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["authSource=$external&replicaSet=atlas-sim"]);

    let a = resolver
        .ipv4_lookup("cluster0-shard-00-01.sim.test.")
        .await?;
    let addrs: Vec<Ipv4Addr> = a
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(addrs, vec![Ipv4Addr::new(127, 0, 0, 2)]);

    let missing = resolver.ipv4_lookup("nowhere.sim.test.").await;
    assert!(missing.is_err(), "unknown name must not resolve");
    let missing = missing.err().map(|err: NetError| err.is_nx_domain());
    assert_eq!(missing, Some(true));
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn resolver_gets_srv_txt_and_a_records_over_udp() -> anyhow::Result<()> {
    resolves_every_record_type(false).await
}

#[tokio::test]
async fn resolver_gets_srv_txt_and_a_records_over_tcp() -> anyhow::Result<()> {
    resolves_every_record_type(true).await
}

#[tokio::test]
async fn resolver_falls_back_to_tcp_for_a_truncated_answer() -> anyhow::Result<()> {
    let targets = (0..40)
        .map(|i| {
            SrvTarget::new(
                format!("member-{i:02}.a-rather-long-domain.sim.test"),
                27017,
            )
        })
        .collect();
    let server = serve(
        "127.0.0.1:0".parse()?,
        Zone::new().with_srv(SRV_NAME, targets),
    )
    .await?;
    let resolver = resolver(server.local_addr(), false)?;
    let srv = resolver.srv_lookup(format!("{SRV_NAME}.")).await?;
    assert_eq!(srv.answers().len(), 40);
    server.shutdown().await;
    Ok(())
}

#[test]
fn response_is_authoritative_and_echoes_id_and_question() -> anyhow::Result<()> {
    let records = Records::build(&zone())?;
    let reply = ask(
        &records,
        &query_bytes("CLUSTER0-shard-00-00.sim.test", RecordType::A)?,
        Transport::Udp,
    )?;
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(
        reply.queries[0].name().to_ascii(),
        "CLUSTER0-shard-00-00.sim.test."
    );
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].data, RData::A(A(Ipv4Addr::LOCALHOST)));
    Ok(())
}

#[test]
fn known_name_with_another_type_is_noerror_and_empty() -> anyhow::Result<()> {
    let records = Records::build(&zone())?;
    let reply = ask(
        &records,
        &query_bytes("cluster0.sim.test.", RecordType::AAAA)?,
        Transport::Udp,
    )?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    Ok(())
}

#[test]
fn unknown_name_is_nxdomain() -> anyhow::Result<()> {
    let records = Records::build(&zone())?;
    let reply = ask(
        &records,
        &query_bytes("_mongodb._tcp.other.sim.test.", RecordType::SRV)?,
        Transport::Tcp,
    )?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    Ok(())
}

#[test]
fn oversized_udp_answer_is_truncated_but_tcp_is_not() -> anyhow::Result<()> {
    let targets = (0..40)
        .map(|i| {
            SrvTarget::new(
                format!("member-{i:02}.a-rather-long-domain.sim.test"),
                27017,
            )
        })
        .collect();
    let records = Records::build(&Zone::new().with_srv(SRV_NAME, targets))?;
    let query = query_bytes(SRV_NAME, RecordType::SRV)?;
    let udp = ask(&records, &query, Transport::Udp)?;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.is_empty());
    let tcp = ask(&records, &query, Transport::Tcp)?;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 40);
    Ok(())
}

#[test]
fn garbage_gets_formerr_with_the_same_id() -> anyhow::Result<()> {
    let records = Records::build(&zone())?;
    let reply = ask(&records, &[0xab, 0xcd, 0x01, 0x00, 0xff], Transport::Udp)?;
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    Ok(())
}

#[test]
fn over_long_txt_string_is_rejected() {
    let zone = Zone::new().with_txt("x.sim.test", vec!["a".repeat(256)]);
    assert!(matches!(
        Records::build(&zone),
        Err(DnsError::InvalidZone { .. })
    ));
}

#[tokio::test]
async fn dropping_the_server_frees_the_port() -> anyhow::Result<()> {
    let server = serve("127.0.0.1:0".parse()?, zone()).await?;
    let addr = server.local_addr();
    drop(server);
    // The tasks notice the cancellation promptly; then both sockets can be bound again.
    let mut rebound = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(server) = serve(addr, zone()).await {
            rebound = Some(server);
            break;
        }
    }
    let rebound = rebound.ok_or_else(|| anyhow::anyhow!("port {addr} never freed"))?;
    assert_eq!(rebound.local_addr(), addr);
    Ok(())
}
