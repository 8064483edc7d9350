//! atlas-sim's command line: every option is a contract that scripts and tests rely on.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The control API, listed at the end of `--help`.
const CONTROL_HELP: &str = "\
Control API (HTTP, JSON, on the start line's `control`):
  GET  /status                  primary, members (state, connections, commands, cursors,
                                operations: running and killed), auth, sts_calls
  POST /stepdown                the primary steps down; the next member is elected
  POST /no-primary?ms=N         no writable primary for N ms, then the next member is elected
  POST /drop-connections        close every client connection now
  POST /blackhole?ms=N          connections open now neither read nor answer for N ms
  POST /failpoint               body as configureFailPoint (failCommand); data may also hold
                                closeConnectionAfterApply: true (run, then close unanswered)
  POST /sts/throttle?times=N    the next N verifications fail as STS throttling does

See testkit/README.md for examples.";

/// What the members are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyKind {
    /// A replica set named `sim`: one primary, the rest secondaries.
    Replset,
    /// mongos routers over one shared store (`msg: "isdbgrid"`, no `setName`).
    Sharded,
}

/// atlas-sim: a local stand-in for a MongoDB Atlas cluster with MONGODB-AWS (IAM)
/// authentication, TLS, a small in-memory document store and fault injection.
///
/// It runs until SIGINT or SIGTERM (exit 0). Once every listener is up it prints one JSON line
/// on stdout (`uri`, `srv_uri`, `ca_file`, `members`, `primary`, `control`, `dns`) and nothing
/// else there; logs go to stderr (filter with ATLAS_SIM_LOG, e.g. `debug`). Give one of
/// --principal, --principals-file or --sts-url.
#[derive(Debug, Clone, Parser)]
#[command(name = "atlas-sim", version, after_long_help = CONTROL_HELP)]
pub struct Options {
    /// Number of members (replica-set members or mongos routers), each on its own 127.0.0.1 port.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub members: u16,

    /// First member port; member K listens on P+K-1. 0 picks free ephemeral ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// `replset` (replica set `sim`) or `sharded` (mongos routers over one store).
    #[arg(long, value_enum, default_value_t = TopologyKind::Replset)]
    pub topology: TopologyKind,

    /// Serve TLS (the default) with a throwaway CA and a server certificate for 127.0.0.1,
    /// localhost and the --srv host names, written to --state-dir; the start line's `ca_file`
    /// is the CA clients must trust.
    #[arg(long, overrides_with = "no_tls")]
    pub tls: bool,

    /// Serve plain TCP instead of TLS (the last of --tls / --no-tls wins).
    #[arg(long = "no-tls", overrides_with = "tls")]
    pub no_tls: bool,

    /// Where ca.pem, ca-key.pem, server.pem and server-key.pem are written (default: a new
    /// directory under the system temp dir, removed when atlas-sim stops).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,

    /// Verify MONGODB-AWS signatures locally with this long-term key (KEY_ID:SECRET); its ARN is
    /// arn:aws:iam::123456789012:user/KEY_ID. Repeatable.
    #[arg(long = "principal", value_name = "KEY_ID:SECRET")]
    pub principals: Vec<String>,

    /// A JSON array of {"key_id", "secret", "session_token" (optional), "arn" (optional)}:
    /// temporary credentials (the signed token must match) and custom ARNs (default
    /// arn:aws:iam::123456789012:user/KEY_ID). Combines with --principal.
    #[arg(long, value_name = "FILE")]
    pub principals_file: Option<PathBuf>,

    /// Instead of verifying locally, forward the signed GetCallerIdentity request to this STS
    /// endpoint (as Atlas does) and take the caller ARN from its reply.
    #[arg(long, value_name = "URL", conflicts_with_all = ["principals", "principals_file"])]
    pub sts_url: Option<String>,

    /// A database user in $external (an IAM ARN). An assumed-role caller
    /// arn:aws:sts::A:assumed-role/R/S matches the user arn:aws:iam::A:role/R. Repeatable; with
    /// none, every verified caller is a user.
    #[arg(long = "user", value_name = "ARN")]
    pub users: Vec<String>,

    /// The STS host the server names in its first SASL reply (`h`); clients sign requests for
    /// this host, and the signed `Host` header must name it.
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub sts_host: String,

    /// Added to each signature verification, local or forwarded (as a slow STS would).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub sts_delay_ms: u64,

    /// Added before every command is answered (handshake included); 0 adds nothing.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,

    /// maxWireVersion the members announce in hello (25: MongoDB 8.0).
    #[arg(long, default_value_t = 25)]
    pub max_wire_version: i32,

    /// Close client connections that send nothing for this long, as a NAT or Atlas would
    /// (a request in progress, such as an awaitable hello, is not idle). 0: never.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub idle_disconnect_ms: u64,

    /// Tags of one member, reported in its hello as `tags` (as Atlas tags its nodes), e.g.
    /// `nodeType:ELECTABLE,region:US_EAST_1` or `nodeType:ANALYTICS`: comma-separated
    /// KEY:VALUE pairs. Give it once per member, in member order (the first for member 1); an
    /// empty SPEC ("") leaves that member untagged, and so does leaving later members out.
    /// Only for a replica set.
    #[arg(long = "member-tags", value_name = "SPEC")]
    pub member_tags: Vec<String>,

    /// How far behind the secondaries' hello `lastWrite.lastWriteDate` is from the primary's,
    /// so that clients compute this staleness for them (for `maxStalenessSeconds`). Only what
    /// hello reports lags: reads on a secondary still see every write.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub secondary_lag_ms: u64,

    /// Port of the HTTP control API on 127.0.0.1 (0: a free port).
    #[arg(long, default_value_t = 0)]
    pub control_port: u16,

    /// Serve DNS for `mongodb+srv://NAME`: SRV _mongodb._tcp.NAME with one target per member
    /// (memberK.<NAME minus its first label>), A records (127.0.0.1) for them, and TXT
    /// `authSource=%24external&replicaSet=sim` (no replicaSet when sharded). The members then
    /// call themselves by those host names in hello. Needs --dns-port.
    #[arg(long, value_name = "NAME", requires = "dns_port")]
    pub srv: Option<String>,

    /// UDP and TCP port of the DNS server on 127.0.0.1 (0: a free port). Needs --srv.
    #[arg(long, value_name = "P", requires = "srv")]
    pub dns_port: Option<u16>,
}

/// Parses one `--member-tags` SPEC (`KEY:VALUE,KEY:VALUE`; empty: no tags).
///
/// # Errors
/// A pair without `:`, an empty key or value, or a key given twice.
pub fn parse_member_tags(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    if spec.trim().is_empty() {
        return Ok(tags);
    }
    for pair in spec.split(',') {
        let (key, value) = pair
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "--member-tags {spec:?}: {pair:?} is not KEY:VALUE (e.g. nodeType:ANALYTICS)"
                )
            })?;
        if tags.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "--member-tags {spec:?}: tag {key:?} is given twice"
            ));
        }
        tags.push((key.to_owned(), value.to_owned()));
    }
    Ok(tags)
}

impl Options {
    /// Whether members speak TLS (`--tls` is the default; `--no-tls` turns it off).
    pub fn tls_enabled(&self) -> bool {
        !self.no_tls || self.tls
    }
}

#[cfg(test)]
mod tests {
    use super::parse_member_tags;

    #[test]
    fn member_tags_are_key_value_pairs() {
        assert_eq!(
            parse_member_tags("nodeType:ELECTABLE,region:US_EAST_1"),
            Ok(vec![
                ("nodeType".to_owned(), "ELECTABLE".to_owned()),
                ("region".to_owned(), "US_EAST_1".to_owned()),
            ])
        );
        assert_eq!(parse_member_tags(""), Ok(Vec::new()));
        for bad in ["nodeType", "nodeType:", ":ANALYTICS", "a:1,a:2", "a:1,"] {
            assert!(parse_member_tags(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
