use super::*;

fn ok(uri: &str) -> UriOptions {
    match parse(uri) {
        Ok(o) => o,
        Err(e) => panic!("{uri}: expected Ok, got {e}"),
    }
}

fn err(uri: &str) -> UriError {
    match parse(uri) {
        Ok(o) => panic!("{uri}: expected an error, got {o:?}"),
        Err(e) => e,
    }
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.into(),
        port,
    }
}

#[test]
fn atlas_srv_uri_as_atlas_gives_it() {
    let o = ok(
        "mongodb+srv://cluster0.abcde.mongodb.net/?retryWrites=true&w=majority\
                &appName=Cluster0&authSource=%24external&authMechanism=MONGODB-AWS",
    );
    assert_eq!(
        o.seeds,
        Seeds::Srv {
            host: "cluster0.abcde.mongodb.net".into(),
            service_name: "mongodb".into()
        }
    );
    assert!(o.tls);
    assert_eq!(o.app_name.as_deref(), Some("Cluster0"));
    assert_eq!(o.function_options, vec!["retryWrites", "w"]);
    assert!(o.unknown_options.is_empty());
    assert_eq!(o.database, None);
}

#[test]
fn atlas_standard_uri_as_atlas_gives_it() {
    let o = ok("mongodb://ac-abc-shard-00-00.abcde.mongodb.net:27017,\
                ac-abc-shard-00-01.abcde.mongodb.net:27017,\
                ac-abc-shard-00-02.abcde.mongodb.net:27017/?ssl=true\
                &replicaSet=atlas-xyz-shard-0&authSource=%24external\
                &authMechanism=MONGODB-AWS&retryWrites=true&w=majority&appName=Cluster0");
    let Seeds::List(hosts) = &o.seeds else {
        panic!("expected a host list")
    };
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[1], hp("ac-abc-shard-00-01.abcde.mongodb.net", 27017));
    assert!(o.tls);
    assert_eq!(o.replica_set.as_deref(), Some("atlas-xyz-shard-0"));
}

#[test]
fn defaults() {
    let o = ok("mongodb://localhost");
    assert_eq!(o.seeds, Seeds::List(vec![hp("localhost", 27017)]));
    assert!(
        !o.tls,
        "plain mongodb:// defaults to tls=false like drivers"
    );
    assert_eq!(o.min_pool_size, 1);
    assert_eq!(o.max_pool_size, 4);
    assert_eq!(o.max_connecting, 2);
    assert_eq!(o.max_idle_time, None);
    assert_eq!(o.wait_queue_timeout, Duration::from_secs(5));
    assert_eq!(o.connect_timeout, Duration::from_secs(10));
    assert_eq!(o.init_connect_timeout(), Duration::from_secs(5));
    assert_eq!(o.server_selection_timeout, Duration::from_secs(15));
    assert_eq!(o.heartbeat_frequency, Duration::from_secs(10));
    assert_eq!(o.srv_max_hosts, 0);
    assert_eq!(o.direct_connection, None);
    assert_eq!(o.replica_set, None);
}

#[test]
fn every_pool_option_is_read_case_insensitively() {
    let o = ok(
        "mongodb://h1:1,h2:2/db?REPLICASET=rs0&TLS=TRUE&tlscafile=%2Fopt%2Fca.pem\
                &appname=my%20app&minpoolsize=2&maxpoolsize=8&maxconnecting=3\
                &maxidletimems=60000&waitqueuetimeoutms=100&connecttimeoutms=2000\
                &serverselectiontimeoutms=3000&heartbeatfrequencyms=500\
                &directconnection=false&authmechanism=mongodb-aws&authsource=%24external\
                &loadbalanced=false",
    );
    assert_eq!(o.seeds, Seeds::List(vec![hp("h1", 1), hp("h2", 2)]));
    assert_eq!(o.database.as_deref(), Some("db"));
    assert_eq!(o.replica_set.as_deref(), Some("rs0"));
    assert!(o.tls);
    assert_eq!(o.tls_ca_file.as_deref(), Some("/opt/ca.pem"));
    assert_eq!(o.app_name.as_deref(), Some("my app"));
    assert_eq!(
        (o.min_pool_size, o.max_pool_size, o.max_connecting),
        (2, 8, 3)
    );
    assert_eq!(o.max_idle_time, Some(Duration::from_secs(60)));
    assert_eq!(o.wait_queue_timeout, Duration::from_millis(100));
    assert_eq!(o.connect_timeout, Duration::from_secs(2));
    assert_eq!(o.init_connect_timeout(), Duration::from_secs(2));
    assert_eq!(o.server_selection_timeout, Duration::from_secs(3));
    assert_eq!(o.heartbeat_frequency, Duration::from_millis(500));
    assert_eq!(o.direct_connection, Some(false));
}

#[test]
fn srv_options() {
    let o = ok("mongodb+srv://c.example.com/?srvMaxHosts=2&srvServiceName=custom-mongo");
    assert_eq!(
        o.seeds,
        Seeds::Srv {
            host: "c.example.com".into(),
            service_name: "custom-mongo".into()
        }
    );
    assert_eq!(o.srv_max_hosts, 2);
    assert_eq!(
        o.seeds.to_string(),
        "mongodb+srv://c.example.com (service custom-mongo)"
    );
}

#[test]
fn ipv6_and_percent_encoded_hosts() {
    let o = ok("mongodb://[::1]:27018,[fe80::1],%6Cocalhost:1/?tls=true");
    assert_eq!(
        o.seeds,
        Seeds::List(vec![
            hp("::1", 27018),
            hp("fe80::1", 27017),
            hp("localhost", 1)
        ])
    );
    assert_eq!(hp("::1", 27018).to_string(), "[::1]:27018");
    assert_eq!(
        o.seeds.to_string(),
        "mongodb://[::1]:27018,[fe80::1]:27017,localhost:1"
    );
}

#[test]
fn hosts_are_lower_cased() {
    assert_eq!(
        ok("mongodb://Cluster0.Example.COM/?tls=true").seeds,
        Seeds::List(vec![hp("cluster0.example.com", 27017)])
    );
}

#[test]
fn malformed_hosts_are_errors() {
    for uri in [
        "mongodb://",
        "mongodb:///db",
        "mongodb://h1,,h2",
        "mongodb://::1",
        "mongodb://[::1",
        "mongodb://[::1]x",
        "mongodb://[zz::1]:1",
        "mongodb://host:0",
        "mongodb://host:65536",
        "mongodb://host:+1",
        "mongodb://host:port",
        "mongodb://ho st",
        "mongodb://%2Ftmp%2Fmongo-pool.sock",
        "mongodb://host%ZZ",
    ] {
        err(uri);
    }
}

#[test]
fn bad_scheme() {
    for uri in [
        "mongodb:/host",
        "http://host",
        "MONGODB+SRV://host",
        "host:27017",
        "",
    ] {
        assert_eq!(err(uri), UriError::BadScheme, "{uri}");
    }
}

#[test]
fn options_need_a_slash_and_equals() {
    assert!(matches!(
        err("mongodb://host?tls=true"),
        UriError::Malformed(_)
    ));
    assert!(matches!(err("mongodb://host/?tls"), UriError::Malformed(_)));
}

#[test]
fn invalid_database_names() {
    assert!(matches!(err("mongodb://host/a.b"), UriError::Malformed(_)));
    assert!(matches!(
        err("mongodb://host/a%24b"),
        UriError::Malformed(_)
    ));
    assert_eq!(
        ok("mongodb://localhost/app_db").database.as_deref(),
        Some("app_db")
    );
}

#[test]
fn srv_rules() {
    assert_eq!(
        err("mongodb+srv://c.example.com:27017"),
        UriError::SrvWithPort("27017".into())
    );
    assert_eq!(
        err("mongodb+srv://a.example.com,b.example.com"),
        UriError::SrvMultipleHosts
    );
    assert_eq!(
        err("mongodb+srv://c.example.com/?tls=false"),
        UriError::SrvTlsDisabled
    );
    assert_eq!(
        err("mongodb+srv://c.example.com/?ssl=false"),
        UriError::SrvTlsDisabled
    );
    assert!(matches!(
        err("mongodb+srv://127.0.0.1"),
        UriError::InvalidHost { .. }
    ));
    assert!(matches!(
        err("mongodb+srv://c.example.com/?directConnection=true"),
        UriError::Conflict(_)
    ));
    assert!(matches!(
        err("mongodb+srv://c.example.com/?srvServiceName=-bad"),
        UriError::InvalidValue {
            option: "srvServiceName",
            ..
        }
    ));
    assert!(matches!(
        err("mongodb+srv://c.example.com/?srvServiceName=waytoolongservicename"),
        UriError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("mongodb+srv://c.example.com/?srvMaxHosts=1&replicaSet=rs0"),
        UriError::Conflict(_)
    ));
    assert!(ok("mongodb+srv://c.example.com/?tls=true").tls);
}

#[test]
fn srv_only_options_are_errors_on_plain_uris() {
    assert_eq!(
        err("mongodb://localhost/?srvMaxHosts=1"),
        UriError::SrvOnly("srvMaxHosts")
    );
    assert_eq!(
        err("mongodb://localhost/?srvServiceName=x"),
        UriError::SrvOnly("srvServiceName")
    );
}

#[test]
fn direct_connection_takes_one_host() {
    assert!(matches!(
        err("mongodb://a,b/?directConnection=true"),
        UriError::Conflict(_)
    ));
    assert_eq!(
        ok("mongodb://localhost/?directConnection=true").direct_connection,
        Some(true)
    );
}

#[test]
fn mechanism_defaults_to_mongodb_aws_and_others_are_rejected() {
    ok("mongodb://localhost/?authMechanism=MONGODB-AWS");
    for m in [
        "SCRAM-SHA-256",
        "MONGODB-X509",
        "PLAIN",
        "GSSAPI",
        "MONGODB-OIDC",
    ] {
        let e = err(&format!("mongodb://localhost/?authMechanism={m}"));
        assert_eq!(e, UriError::UnsupportedMechanism(m.into()));
        assert!(e.to_string().contains("MONGODB-AWS"));
    }
}

#[test]
fn auth_source_must_be_external() {
    ok("mongodb://localhost/?authSource=$external");
    let e = err("mongodb://localhost/?authSource=admin");
    assert_eq!(e, UriError::UnsupportedAuthSource("admin".into()));
    assert!(e.to_string().contains("%24external"));
}

#[test]
fn credentials_in_the_uri_are_rejected_without_echoing_them() {
    for uri in [
        "mongodb://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG@h/?authMechanism=MONGODB-AWS",
        "mongodb+srv://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG@c.example.com/",
        "mongodb://user@h",
        "mongodb://:pw@h",
    ] {
        let e = err(uri);
        assert_eq!(e, UriError::CredentialsInUri, "{uri}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("AKIA") && !text.contains("wJalr"), "{text}");
        assert!(text.contains("execution role"), "{text}");
    }
}

#[test]
fn session_token_property_is_rejected_without_echoing_it() {
    let e =
        err("mongodb://localhost/?authMechanismProperties=AWS_SESSION_TOKEN:FQoGZXIvYXdzEXAMPLE");
    assert_eq!(e, UriError::MechanismProperties);
    assert!(!format!("{e} {e:?}").contains("FQoG"));
}

#[test]
fn client_certificate_options_are_rejected_without_echoing_them() {
    let e = err("mongodb://localhost/?tls=true&tlsCertificateKeyFilePassword=hunter2");
    assert!(matches!(e, UriError::Unsupported { .. }));
    assert!(!format!("{e} {e:?}").contains("hunter2"));
}

#[test]
fn verification_cannot_be_turned_off() {
    for opt in VERIFICATION_OPTIONS {
        let e = err(&format!("mongodb://localhost/?tls=true&{opt}=true"));
        assert_eq!(e, UriError::VerificationDisabled(opt));
        assert!(e.to_string().contains("never"));
        ok(&format!("mongodb://localhost/?tls=true&{opt}=false"));
        assert!(matches!(
            err(&format!("mongodb://localhost/?{opt}=maybe")),
            UriError::InvalidValue { .. }
        ));
    }
    // Case-insensitive.
    assert_eq!(
        err("mongodb://localhost/?tlsinsecure=TRUE"),
        UriError::VerificationDisabled("tlsInsecure")
    );
}

#[test]
fn tls_and_ssl_must_agree() {
    assert_eq!(
        err("mongodb://localhost/?tls=true&ssl=false"),
        UriError::TlsSslConflict
    );
    assert!(ok("mongodb://localhost/?tls=true&ssl=true").tls);
    assert!(ok("mongodb://localhost/?ssl=true").tls);
    assert!(matches!(
        err("mongodb://localhost/?tlsCAFile=%2Fca.pem"),
        UriError::Conflict(_)
    ));
}

#[test]
fn load_balanced_true_is_an_error_that_explains() {
    let e = err("mongodb://localhost/?loadBalanced=true");
    assert_eq!(e, UriError::LoadBalanced);
    assert!(e.to_string().contains("shares upstream connections"));
    ok("mongodb://localhost/?loadBalanced=false");
}

#[test]
fn pool_sizes_are_bounded() {
    assert!(matches!(
        err("mongodb://localhost/?maxPoolSize=0"),
        UriError::OutOfRange {
            option: "maxPoolSize",
            ..
        }
    ));
    assert!(matches!(
        err("mongodb://localhost/?maxPoolSize=101"),
        UriError::OutOfRange {
            option: "maxPoolSize",
            ..
        }
    ));
    assert_eq!(
        ok("mongodb://localhost/?maxPoolSize=100").max_pool_size,
        100
    );
    assert_eq!(
        err("mongodb://localhost/?minPoolSize=5&maxPoolSize=4"),
        UriError::MinAboveMax { min: 5, max: 4 }
    );
    assert_eq!(
        err("mongodb://localhost/?minPoolSize=5"),
        UriError::MinAboveMax { min: 5, max: 4 }
    );
    assert_eq!(ok("mongodb://localhost/?minPoolSize=0").min_pool_size, 0);
    assert!(matches!(
        err("mongodb://localhost/?maxConnecting=0"),
        UriError::OutOfRange {
            option: "maxConnecting",
            ..
        }
    ));
}

#[test]
fn waits_are_bounded() {
    for opt in [
        "waitQueueTimeoutMS",
        "connectTimeoutMS",
        "serverSelectionTimeoutMS",
    ] {
        let e = err(&format!("mongodb://localhost/?{opt}=0"));
        assert!(
            matches!(e, UriError::OutOfRange { value: 0, .. }),
            "{opt}: {e}"
        );
        assert!(e.to_string().contains("forever"));
    }
    assert!(matches!(
        err("mongodb://localhost/?heartbeatFrequencyMS=499"),
        UriError::OutOfRange {
            option: "heartbeatFrequencyMS",
            ..
        }
    ));
    assert_eq!(
        ok("mongodb://localhost/?maxIdleTimeMS=0").max_idle_time,
        None
    );
    assert_eq!(
        ok("mongodb://localhost/?connectTimeoutMS=30000").init_connect_timeout(),
        INIT_CONNECT_TIMEOUT_CAP
    );
}

#[test]
fn malformed_numbers_and_booleans() {
    for uri in [
        "mongodb://localhost/?maxPoolSize=ten",
        "mongodb://localhost/?maxPoolSize=-1",
        "mongodb://localhost/?maxPoolSize=",
        "mongodb://localhost/?maxPoolSize=1.5",
        "mongodb://localhost/?connectTimeoutMS=99999999999999999999999",
        "mongodb://localhost/?tls=yes",
        "mongodb://localhost/?tls=1",
        "mongodb://localhost/?directConnection=on",
        "mongodb://localhost/?loadBalanced=nope",
    ] {
        assert!(matches!(err(uri), UriError::InvalidValue { .. }), "{uri}");
    }
    assert!(matches!(
        err("mongodb://localhost/?maxPoolSize=99999999999"),
        UriError::OutOfRange { .. }
    ));
}

#[test]
fn duplicate_pool_options_are_errors() {
    assert_eq!(
        err("mongodb://localhost/?maxPoolSize=2&MAXPOOLSIZE=3"),
        UriError::Duplicate("maxPoolSize")
    );
}

#[test]
fn function_options_are_collected_not_applied() {
    let o = ok(
        "mongodb://localhost/?retryWrites=true&w=majority&journal=true&readPreference=secondary\
                &readPreferenceTags=dc:ny&readPreferenceTags=&compressors=zstd,zlib\
                &socketTimeoutMS=0&timeoutMS=100&uuidRepresentation=standard\
                &readConcernLevel=majority&retryReads=false&wtimeoutMS=10\
                &maxStalenessSeconds=90&zlibCompressionLevel=3&localThresholdMS=15\
                &serverMonitoringMode=poll",
    );
    assert_eq!(o.function_options.len(), 16, "{:?}", o.function_options);
    assert!(
        o.function_options
            .contains(&"readPreferenceTags".to_owned())
    );
    assert!(o.unknown_options.is_empty());
}

#[test]
fn unknown_options_are_listed_by_name_only() {
    let o = ok("mongodb://localhost/?frobnicate=s3cret&maxPoolsize=3&fooBar=1");
    assert_eq!(o.unknown_options, vec!["frobnicate", "fooBar"]);
    assert_eq!(o.max_pool_size, 3);
    assert!(!format!("{o:?}").contains("s3cret"));
}

#[test]
fn unknown_options_get_the_option_they_most_likely_meant() {
    let o = ok("mongodb://localhost/?maxPoolSze=5&retryWrite=true&frobnicate=1&MAXIDLETIMEMS=9");
    assert_eq!(
        o.unknown_options_explained(),
        "maxPoolSze (did you mean maxPoolSize?), retryWrite (did you mean retryWrites?), \
         frobnicate"
    );
    assert_eq!(o.max_idle_time, Some(Duration::from_millis(9)));
}

#[test]
fn every_pool_option_is_known() {
    for name in options::POOL_OPTIONS {
        let value = match *name {
            "authMechanism" => "MONGODB-AWS",
            "authSource" => "$external",
            "tls" | "ssl" => "true",
            "directConnection" | "loadBalanced" => "false",
            "srvMaxHosts" => "0",
            "minPoolSize" | "maxPoolSize" | "maxConnecting" => "1",
            n if n.ends_with("MS") => "1000",
            _ => "x",
        };
        let o = ok(&format!(
            "mongodb+srv://cluster0.example.net/?{name}={value}"
        ));
        assert!(o.unknown_options.is_empty(), "{name}: {o:?}");
    }
}

#[test]
fn app_name_is_bounded() {
    let long = "a".repeat(129);
    assert!(matches!(
        err(&format!("mongodb://localhost/?appName={long}")),
        UriError::OutOfRange {
            option: "appName",
            ..
        }
    ));
    assert_eq!(
        ok(&format!("mongodb://localhost/?appName={}", "a".repeat(128)))
            .app_name
            .map(|a| a.len()),
        Some(128)
    );
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b+c%2F", "x").unwrap(), "a b+c/");
    assert_eq!(percent_decode("%e2%82%ac", "x").unwrap(), "\u{20ac}");
    assert!(percent_decode("%", "x").is_err());
    assert!(percent_decode("%4", "x").is_err());
    assert!(percent_decode("%ff", "x").is_err(), "not UTF-8");
    assert!(matches!(
        err("mongodb://localhost/?appName=%zz"),
        UriError::PercentEncoding("option values")
    ));
}

#[test]
fn display_summarises_without_options_text() {
    let o = ok("mongodb+srv://c.example.com/?replicaSet=rs0&w=majority");
    let s = o.to_string();
    assert!(
        s.starts_with("mongodb+srv://c.example.com replicaSet=rs0 tls=true"),
        "{s}"
    );
    assert!(!s.contains("majority"));
}

#[test]
fn long_values_are_truncated_in_errors() {
    let v = "x".repeat(500);
    let e = err(&format!("mongodb://localhost/?tls={v}"));
    assert!(e.to_string().len() < 200, "{e}");
}

#[test]
fn tls_off_is_refused_for_a_host_that_is_not_loopback() {
    for uri in [
        "mongodb://cluster0-shard-00-00.abcde.mongodb.net:27017/?authMechanism=MONGODB-AWS",
        "mongodb://db.internal/?tls=false",
        "mongodb://10.0.0.5:27017/?ssl=false",
        "mongodb://127.0.0.1:27017,10.0.0.6:27017/?replicaSet=rs0",
        "mongodb://[fe80::1]:27017",
        "mongodb://[::ffff:10.0.0.1]",
        "mongodb://localhost.evil.example/?tls=false",
        "mongodb://128.0.0.1",
    ] {
        let e = err(uri);
        assert!(
            matches!(e, UriError::PlaintextToRemoteHost(_)),
            "{uri}: {e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("Add tls=true"), "{message}");
        assert!(message.contains("not a loopback address"), "{message}");
    }
    assert_eq!(
        err("mongodb://127.0.0.1:27017,db.internal:27018").to_string(),
        "TLS is off (mongodb:// without tls=true, or tls=false) and db.internal:27018 is not a \
         loopback address: MONGODB-AWS would send the signed STS request and the session token \
         in cleartext, where anyone on the path can replay them. Add tls=true (Atlas always \
         requires TLS) or use the mongodb+srv:// string Atlas gives; TLS may be off only for \
         localhost, 127.0.0.0/8 and ::1"
    );
}

#[test]
fn tls_off_is_allowed_for_loopback_hosts_only() {
    for uri in [
        "mongodb://localhost",
        "mongodb://LOCALHOST:27018/?tls=false",
        "mongodb://127.0.0.1:27017,127.0.0.2:27018/?replicaSet=rs0",
        "mongodb://127.255.255.254",
        "mongodb://[::1]:27017/?ssl=false",
        "mongodb://[::ffff:127.0.0.1]:27017",
    ] {
        assert!(!ok(uri).tls, "{uri}");
    }
    // With TLS on, any host.
    assert!(ok("mongodb://db.internal:27017,10.0.0.6/?tls=true").tls);
}
