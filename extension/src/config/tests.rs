use std::collections::HashMap;

use super::*;

const ATLAS: &str = "mongodb+srv://cluster0.abcde.mongodb.net/?retryWrites=true&w=majority\
                     &appName=Cluster0&authSource=%24external&authMechanism=MONGODB-AWS";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = env(pairs);
    let names: Vec<String> = vars.keys().cloned().collect();
    Config::from_lookup_and_names(|k| vars.get(k).cloned(), names)
}

fn load_ok(pairs: &[(&str, &str)]) -> Config {
    match load(pairs) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn load_err(pairs: &[(&str, &str)]) -> ConfigError {
    match load(pairs) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_apply_outside_lambda() {
    let c = load_ok(&[(ENV_URI, ATLAS)]);
    assert_eq!(c.socket_path, PathBuf::from("/tmp/mongo-pool.sock"));
    assert_eq!(c.socket_mode.bits(), 0o600);
    assert_eq!(c.run_mode, RunMode::Sidecar);
    assert_eq!(c.log_filter, "info");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.dns_server, None);
    assert_eq!(c.max_clients, 512);
    assert_eq!(c.prewarm, Prewarm::Off);
    assert!(!c.init_fail_fast);
    assert_eq!(c.faas, FaasEnv::default());
}

#[test]
fn lambda_is_detected_from_runtime_api_and_defaults_to_json_logs() {
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LAMBDA_RUNTIME_API, "127.0.0.1:9001"),
        (ENV_EXECUTION_ENV, "AWS_Lambda_python3.12"),
        (ENV_FUNCTION_MEMORY_SIZE, "1024"),
        (ENV_REGION, "eu-west-1"),
    ]);
    assert_eq!(
        c.run_mode,
        RunMode::Lambda {
            runtime_api: "127.0.0.1:9001".into()
        }
    );
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.faas.memory_mb, Some(1024));
    assert_eq!(c.faas.region.as_deref(), Some("eu-west-1"));
    assert!(c.faas.is_lambda(&c.run_mode));
}

#[test]
fn sidecar_mode_wins_over_runtime_api_and_log_format_can_be_forced() {
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LAMBDA_RUNTIME_API, "127.0.0.1:9001"),
        (ENV_MODE, "sidecar"),
        (ENV_LOG_FORMAT, "json"),
    ]);
    assert_eq!(c.run_mode, RunMode::Sidecar);
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn lambda_mode_without_runtime_api_is_an_error() {
    let e = load_err(&[(ENV_URI, ATLAS), (ENV_MODE, "lambda")]);
    assert!(e.to_string().contains(ENV_LAMBDA_RUNTIME_API), "{e}");
}

#[test]
fn every_setting_is_read() {
    let c = load_ok(&[
        (ENV_URI, "mongodb://localhost:27018/?tls=true"),
        (ENV_SOCKET, "/run/mp.sock"),
        (ENV_LOG, "mongo_pool=debug,warn"),
        (ENV_LOG_FORMAT, "TEXT"),
        (ENV_DNS_SERVER, "127.0.0.1:5353"),
        (ENV_SOCKET_MODE, "0660"),
        (ENV_MAX_CLIENTS, "64"),
        (ENV_PREWARM, "invoke"),
        (ENV_INIT_FAIL_FAST, "true"),
    ]);
    assert_eq!(c.socket_path, PathBuf::from("/run/mp.sock"));
    assert_eq!(c.log_filter, "mongo_pool=debug,warn");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(c.socket_mode.bits(), 0o660);
    assert_eq!(c.socket_mode.to_string(), "0660");
    assert_eq!(c.max_clients, 64);
    assert_eq!(c.prewarm, Prewarm::Invoke);
    assert!(c.init_fail_fast);
}

#[test]
fn missing_uri_says_what_to_set() {
    let e = load_err(&[]);
    assert!(matches!(e, ConfigError::Missing { var: ENV_URI, .. }));
    assert!(e.to_string().contains("mongodb+srv://"), "{e}");
}

#[test]
fn unknown_prefixed_variable_is_rejected_naming_the_known_ones() {
    let e = load_err(&[(ENV_URI, ATLAS), ("MONGO_POOL_SOCKETS", "/tmp/x.sock")]);
    let msg = e.to_string();
    assert!(msg.contains("MONGO_POOL_SOCKETS"), "{msg}");
    assert!(
        msg.contains(ENV_SOCKET_MODE) && msg.contains(ENV_PREWARM),
        "{msg}"
    );
}

#[test]
fn a_mistyped_variable_gets_the_one_it_most_likely_meant() {
    for (typo, meant) in [
        ("MONGO_POOL_MAX_CLIENT", ENV_MAX_CLIENTS),
        ("MONGO_POOL_LOGFORMAT", ENV_LOG_FORMAT),
        ("MONGO_POOL_URL", ENV_URI),
        ("MONGO_POOL_INIT_FAILFAST", ENV_INIT_FAIL_FAST),
        ("MONGO_POOL_SOCKETS", ENV_SOCKET),
    ] {
        let msg = load_err(&[(ENV_URI, ATLAS), (typo, "1")]).to_string();
        assert!(
            msg.contains(&format!("{typo}: did you mean {meant}? ")),
            "{msg}"
        );
    }
    let msg = load_err(&[(ENV_URI, ATLAS), ("MONGO_POOL_FOO", "1")]).to_string();
    assert!(!msg.contains("did you mean"), "{msg}");
}

#[test]
fn other_variables_are_ignored() {
    load_ok(&[(ENV_URI, ATLAS), ("PATH", "/usr/bin"), ("MONGO_URI", "x")]);
}

#[test]
fn from_lookup_does_not_check_unknown_names() {
    let vars = env(&[(ENV_URI, ATLAS)]);
    let c = Config::from_lookup(|k| vars.get(k).cloned());
    assert!(c.is_ok());
}

#[test]
fn invalid_values_name_the_variable() {
    let cases: &[(&str, &str)] = &[
        (ENV_MODE, "daemon"),
        (ENV_LOG_FORMAT, "yaml"),
        (ENV_DNS_SERVER, "10.0.0.2"),
        (ENV_DNS_SERVER, "dns.local:53"),
        (ENV_SOCKET_MODE, "0600x"),
        (ENV_SOCKET_MODE, "4600"),
        (ENV_SOCKET_MODE, "1777"),
        (ENV_SOCKET_MODE, "0400"),
        (ENV_SOCKET_MODE, "800"),
        (ENV_SOCKET_MODE, "07777"),
        (ENV_MAX_CLIENTS, "0"),
        (ENV_MAX_CLIENTS, "-1"),
        (ENV_MAX_CLIENTS, "lots"),
        (ENV_MAX_CLIENTS, "1000000"),
        (ENV_PREWARM, "always"),
        (ENV_INIT_FAIL_FAST, "yes"),
        (ENV_SOCKET, "relative.sock"),
        (ENV_LOG, "mongo_pool=loud"),
        (ENV_FUNCTION_MEMORY_SIZE, "big"),
        (ENV_LAMBDA_LOG_LEVEL, "LOUD"),
        (ENV_LAMBDA_LOG_FORMAT, "XML"),
    ];
    for (var, value) in cases {
        let e = load_err(&[(ENV_URI, ATLAS), (var, value)]);
        assert!(e.to_string().contains(var), "{var}={value}: {e}");
    }
}

#[test]
fn socket_mode_accepts_common_spellings() {
    for (value, bits) in [
        ("600", 0o600),
        ("0600", 0o600),
        ("0o660", 0o660),
        ("0777", 0o777),
    ] {
        let c = load_ok(&[(ENV_URI, ATLAS), (ENV_SOCKET_MODE, value)]);
        assert_eq!(c.socket_mode.bits(), bits, "{value}");
    }
}

#[test]
fn uri_errors_are_reported_under_the_uri_variable() {
    let e = load_err(&[(ENV_URI, "postgres://x")]);
    assert!(matches!(e, ConfigError::Uri(UriError::BadScheme)));
    assert!(e.to_string().starts_with(ENV_URI), "{e}");
}

#[test]
fn ipv6_dns_server_is_accepted() {
    let c = load_ok(&[(ENV_URI, ATLAS), (ENV_DNS_SERVER, "[::1]:53")]);
    assert_eq!(c.dns_server, Some("[::1]:53".parse().unwrap()));
}

#[test]
fn display_and_debug_never_show_the_uri_credentials_or_query() {
    let c = load_ok(&[(ENV_URI, ATLAS), (ENV_LAMBDA_RUNTIME_API, "127.0.0.1:9001")]);
    for text in [c.to_string(), format!("{c:?}")] {
        assert!(text.contains("cluster0.abcde.mongodb.net"), "{text}");
        assert!(!text.contains("retryWrites=true"), "{text}");
        assert!(!text.contains("authMechanism="), "{text}");
    }
    // A URI with a secret never becomes a Config, and the error does not quote it.
    let e = load_err(&[(
        ENV_URI,
        "mongodb+srv://AKIAEXAMPLE:s3cr3t%2Fkey@cluster0.abcde.mongodb.net/",
    )]);
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("s3cr3t") && !text.contains("AKIAEXAMPLE"),
        "{text}"
    );
}

#[test]
fn an_empty_variable_is_unset_and_recorded() {
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LOG, ""),
        (ENV_LOG_FORMAT, " "),
        (ENV_SOCKET, ""),
        (ENV_SOCKET_MODE, ""),
        (ENV_MAX_CLIENTS, ""),
        (ENV_MODE, ""),
        (ENV_PREWARM, ""),
        (ENV_INIT_FAIL_FAST, ""),
        (ENV_DNS_SERVER, ""),
    ]);
    let defaults = load_ok(&[(ENV_URI, ATLAS)]);
    assert_eq!(c.log_filter, defaults.log_filter);
    assert_eq!(c.log_format, defaults.log_format);
    assert_eq!(c.socket_path, defaults.socket_path);
    assert_eq!(c.socket_mode, defaults.socket_mode);
    assert_eq!(c.max_clients, defaults.max_clients);
    assert_eq!(c.run_mode, defaults.run_mode);
    assert_eq!(c.prewarm, defaults.prewarm);
    assert_eq!(c.init_fail_fast, defaults.init_fail_fast);
    assert_eq!(c.dns_server, defaults.dns_server);
    let mut empty = c.empty_variables.clone();
    empty.sort_unstable();
    let mut expected = vec![
        ENV_LOG,
        ENV_LOG_FORMAT,
        ENV_SOCKET,
        ENV_SOCKET_MODE,
        ENV_MAX_CLIENTS,
        ENV_MODE,
        ENV_PREWARM,
        ENV_INIT_FAIL_FAST,
        ENV_DNS_SERVER,
    ];
    expected.sort_unstable();
    assert_eq!(empty, expected);
    assert!(defaults.empty_variables.is_empty());
    // The one required variable, empty, is as missing as unset.
    assert!(matches!(
        load_err(&[(ENV_URI, "")]),
        ConfigError::Missing { var: ENV_URI, .. }
    ));
}

#[test]
fn lambda_logging_controls_apply_when_mongo_pool_log_variables_are_unset() {
    for (level, filter) in [
        ("TRACE", "trace"),
        ("DEBUG", "debug"),
        ("INFO", "info"),
        ("WARN", "warn"),
        ("ERROR", "error"),
        ("FATAL", "error"),
        ("debug", "debug"),
    ] {
        let c = load_ok(&[(ENV_URI, ATLAS), (ENV_LAMBDA_LOG_LEVEL, level)]);
        assert_eq!(c.log_filter, filter, "{level}");
    }
    // Outside Lambda's run mode too: the variable says what the function's owner chose.
    let c = load_ok(&[(ENV_URI, ATLAS), (ENV_LAMBDA_LOG_FORMAT, "JSON")]);
    assert_eq!(c.log_format, LogFormat::Json);
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LAMBDA_RUNTIME_API, "127.0.0.1:9001"),
        (ENV_LAMBDA_LOG_FORMAT, "Text"),
    ]);
    assert_eq!(c.log_format, LogFormat::Text);
    // MONGO_POOL_* win.
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LOG, "warn"),
        (ENV_LOG_FORMAT, "text"),
        (ENV_LAMBDA_LOG_LEVEL, "TRACE"),
        (ENV_LAMBDA_LOG_FORMAT, "JSON"),
    ]);
    assert_eq!(
        (c.log_filter.as_str(), c.log_format),
        ("warn", LogFormat::Text)
    );
    // An empty MONGO_POOL_LOG is unset, so Lambda's level applies.
    let c = load_ok(&[
        (ENV_URI, ATLAS),
        (ENV_LOG, ""),
        (ENV_LAMBDA_LOG_LEVEL, "WARN"),
    ]);
    assert_eq!(c.log_filter, "warn");
    // An unknown value names Lambda's variable.
    let e = load_err(&[(ENV_URI, ATLAS), (ENV_LAMBDA_LOG_LEVEL, "VERBOSE")]);
    assert!(e.to_string().starts_with("AWS_LAMBDA_LOG_LEVEL="), "{e}");
}

#[test]
fn mongo_pool_log_is_validated_strictly_with_the_syntax_in_the_message() {
    for (filter, hint) in [
        ("warning", "did you mean warn?"),
        ("verbose", "did you mean trace?"),
        ("mongo-pool=debug", "did you mean mongo_pool?"),
        ("mongo_pool=debug,inf", "did you mean info?"),
        ("mongo_pool", "\"mongo_pool\" is not a level"),
        ("info,,warn", "an empty directive"),
        ("info,warn", "more than one default level"),
        ("aws config=debug", "is not a target"),
    ] {
        let e = load_err(&[(ENV_URI, ATLAS), (ENV_LOG, filter)]);
        let text = e.to_string();
        assert!(text.starts_with("MONGO_POOL_LOG="), "{filter}: {text}");
        assert!(text.contains(hint), "{filter}: {text}");
        assert!(
            text.contains("expected a level (off, error, warn, info, debug, trace)"),
            "{filter}: {text}"
        );
    }
    for filter in [
        "info",
        "TRACE",
        "mongo_pool=debug,warn",
        "warn,mongo_pool::upstream=trace,hickory_resolver=debug",
        "off",
    ] {
        let c = load_ok(&[(ENV_URI, ATLAS), (ENV_LOG, filter)]);
        assert_eq!(c.log_filter, filter);
    }
}

#[test]
fn no_color_is_read_with_the_configuration() {
    assert!(!load_ok(&[(ENV_URI, ATLAS)]).no_color);
    assert!(!load_ok(&[(ENV_URI, ATLAS), (ENV_NO_COLOR, "")]).no_color);
    assert!(load_ok(&[(ENV_URI, ATLAS), (ENV_NO_COLOR, "1")]).no_color);
}
