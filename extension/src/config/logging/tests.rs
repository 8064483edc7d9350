use tracing::Level;

use super::*;

fn filter(spec: &str) -> Targets {
    capped(&spec.parse::<Targets>().unwrap())
}

/// Targets that print credentials at TRACE (see the module documentation).
const BODY_PRINTERS: &[&str] = &[
    "aws_smithy_runtime::client::orchestrator",
    "aws_smithy_runtime::client::orchestrator::http",
    "aws_config::imds::client::token",
    "aws_config::ecs",
    "aws_credential_types::provider",
    "aws_runtime::env_config",
    "aws_sdk_sts::operation",
    "hyper::proto::h1::role",
    "hyper_util::client::legacy::pool",
    "h2::codec::framed_read",
    "rustls::client::hs",
    "tokio_rustls::client",
];

#[test]
fn trace_never_reaches_the_sdk_http_or_tls_targets() {
    let f = filter("trace");
    for target in BODY_PRINTERS {
        assert!(!f.would_enable(target, &Level::TRACE), "{target} at TRACE");
        assert!(f.would_enable(target, &Level::DEBUG), "{target} at DEBUG");
    }
    assert!(f.would_enable("mongo_pool::upstream::connect", &Level::TRACE));
    assert!(f.would_enable("mongo_pool_wire::frame", &Level::TRACE));
    assert!(f.would_enable("mongo_pool", &Level::TRACE));
}

#[test]
fn naming_a_capped_target_does_not_lift_the_cap() {
    for spec in [
        "aws_smithy_runtime=trace",
        "aws_smithy_runtime::client::orchestrator=trace",
        "aws_config=trace,trace",
        "aws=trace",
        "a=trace",
        "hyper=trace",
        "hyper_util=trace",
        "h2=trace",
        "rustls=trace",
        "warn,rustls::client=trace",
    ] {
        let f = filter(spec);
        for target in BODY_PRINTERS {
            assert!(!f.would_enable(target, &Level::TRACE), "{spec}: {target}");
        }
    }
    // The cap is a ceiling, not a floor: a named capped target keeps a quieter level.
    let f = filter("aws_smithy_runtime=debug,rustls=warn,trace");
    assert!(f.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
    assert!(!f.would_enable("rustls::client::hs", &Level::INFO));
    assert!(f.would_enable("rustls::client::hs", &Level::WARN));
}

#[test]
fn aws_sigv4_is_off_whatever_is_asked() {
    for spec in [
        "trace",
        "aws_sigv4=trace",
        "aws_sigv4=error",
        "aws=trace",
        "error",
    ] {
        let f = filter(spec);
        assert!(
            !f.would_enable("aws_sigv4::http_request::sign", &Level::ERROR),
            "{spec}"
        );
    }
}

#[test]
fn other_crates_go_below_debug_only_when_named() {
    let f = filter("trace");
    assert!(f.would_enable("hickory_resolver::lookup", &Level::DEBUG));
    assert!(!f.would_enable("hickory_resolver::lookup", &Level::TRACE));
    let f = filter("trace,hickory_resolver=trace");
    assert!(f.would_enable("hickory_resolver::lookup", &Level::TRACE));
    assert!(!f.would_enable("aws_config::ecs", &Level::TRACE));
}

#[test]
fn quieter_filters_are_unchanged() {
    let f = filter("info");
    assert!(f.would_enable("mongo_pool::serve", &Level::INFO));
    assert!(!f.would_enable("mongo_pool::serve", &Level::DEBUG));
    assert!(f.would_enable("aws_config::ecs", &Level::INFO));
    assert!(!f.would_enable("aws_config::ecs", &Level::DEBUG));
    // Only mongo-pool named: everything else stays off, as the user asked.
    let f = filter("mongo_pool=debug");
    assert!(f.would_enable("mongo_pool::serve", &Level::DEBUG));
    assert!(!f.would_enable("aws_config::ecs", &Level::ERROR));
    assert!(!f.would_enable("hickory_resolver", &Level::ERROR));
    // mongo_pool named explicitly keeps its own level, even under a louder default.
    let f = filter("mongo_pool=info,trace");
    assert!(!f.would_enable("mongo_pool::serve", &Level::DEBUG));
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    assert!(!no_color(None));
    assert!(!no_color(Some("")), "an empty NO_COLOR does not count");
    assert!(no_color(Some("1")));
    assert!(no_color(Some("true")));
    assert!(use_ansi(true, false));
    assert!(!use_ansi(true, true));
    assert!(!use_ansi(false, false));
    assert!(!use_ansi(false, true));
}

#[test]
fn lambda_levels_map_to_filters() {
    assert_eq!(from_lambda_level("TRACE"), Some("trace"));
    assert_eq!(from_lambda_level("Fatal"), Some("error"));
    assert_eq!(from_lambda_level(" warn "), Some("warn"));
    assert_eq!(from_lambda_level("WARNING"), None);
    assert_eq!(from_lambda_level(""), None);
}

#[test]
fn every_accepted_filter_parses_as_targets() {
    for filter in ["info", "mongo_pool=debug,warn", "Trace", "a::b=off,error"] {
        assert!(validate(filter).is_ok(), "{filter}");
        assert!(filter.parse::<Targets>().is_ok(), "{filter}");
    }
}
