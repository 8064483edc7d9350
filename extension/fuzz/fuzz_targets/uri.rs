//! Arbitrary text through the connection-string parser and the configuration built around it.
//!
//! The input's first line is a connection string, parsed as it is and behind each scheme (so
//! mutations reach the host list and the options rather than stopping at the scheme). The
//! lines after it are the values of the other `MONGO_POOL_*` variables, in the order of
//! `KNOWN_VARS`, for `Config::from_lookup`.
//!
//! Besides not crashing, it checks what the parser promises: an accepted string satisfies the
//! documented bounds, and a secret (a password, `authMechanismProperties`, a key file password)
//! is never quoted by an error, a `Display` or a `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mongo_pool::config::uri::{self, MAX_APP_NAME_LEN, MAX_MAX_POOL_SIZE, MIN_HEARTBEAT_FREQUENCY};
use mongo_pool::config::{Config, ENV_URI, KNOWN_VARS, Seeds};

/// Stands for a secret; the fuzzer's own text never contains it (checked before use).
const CANARY: &str = "Zq9CanarySecretXw7";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.collect();

    for candidate in [
        first.to_owned(),
        format!("mongodb://{first}"),
        format!("mongodb+srv://{first}"),
    ] {
        check(&candidate);
    }
    config(first, &rest);
    if !text.contains(CANARY) {
        secrets_stay_secret(first);
    }
});

/// Parses `candidate` and checks an accepted result against the documented bounds.
fn check(candidate: &str) {
    match uri::parse(candidate) {
        Ok(options) => {
            assert!((1..=MAX_MAX_POOL_SIZE).contains(&options.max_pool_size));
            assert!(options.min_pool_size <= options.max_pool_size);
            assert!((1..=MAX_MAX_POOL_SIZE).contains(&options.max_connecting));
            assert!(!options.wait_queue_timeout.is_zero());
            assert!(!options.connect_timeout.is_zero());
            assert!(!options.server_selection_timeout.is_zero());
            assert!(options.heartbeat_frequency >= MIN_HEARTBEAT_FREQUENCY);
            assert!(options.init_connect_timeout() <= options.connect_timeout);
            assert!(
                options
                    .app_name
                    .as_ref()
                    .is_none_or(|n| n.len() <= MAX_APP_NAME_LEN)
            );
            match &options.seeds {
                Seeds::List(hosts) => {
                    assert!(!hosts.is_empty());
                    for host in hosts {
                        assert!(!host.host.is_empty() && host.port > 0);
                        assert_eq!(host.host, host.host.to_ascii_lowercase());
                    }
                }
                Seeds::Srv { host, .. } => {
                    assert!(!host.is_empty());
                    assert!(options.tls, "mongodb+srv:// always uses TLS");
                }
            }
            let _ = options.to_string();
            let _ = format!("{options:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The whole configuration, with the other variables taken from the following lines.
fn config(uri: &str, values: &[&str]) {
    let lookup = |name: &str| {
        if name == ENV_URI {
            return Some(uri.to_owned());
        }
        let index = KNOWN_VARS.iter().position(|v| *v == name)?;
        // KNOWN_VARS starts with ENV_URI, which the first line holds.
        values.get(index.checked_sub(1)?).map(|v| (*v).to_owned())
    };
    match Config::from_lookup(lookup) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The same text with a secret placed where a user might paste one: no output quotes it.
fn secrets_stay_secret(text: &str) {
    let (hosts, query) = match text.split_once('?') {
        Some((hosts, query)) => (hosts, Some(query)),
        None => (text, None),
    };
    let mut uris = vec![
        // A password before the hosts (an AWS secret key carries '/' and '+').
        format!("mongodb://AKIAEXAMPLE:{CANARY}/+x@{text}"),
        format!("mongodb+srv://user:{CANARY}@{text}"),
    ];
    for option in [
        "authMechanismProperties=AWS_SESSION_TOKEN:",
        "tlsCertificateKeyFilePassword=",
    ] {
        let uri = match query {
            Some(query) => format!("mongodb://{hosts}?{query}&{option}{CANARY}"),
            None => format!("mongodb://{hosts}/?{option}{CANARY}"),
        };
        uris.push(uri);
    }
    for uri in &uris {
        // Credentials and these options are always refused, whatever else the string holds.
        let e = match uri::parse(uri) {
            Ok(options) => panic!("a connection string with a secret was accepted: {options:?}"),
            Err(e) => e,
        };
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(CANARY), "a secret was quoted: {shown}");
    }
}
