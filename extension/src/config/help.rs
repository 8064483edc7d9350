//! The configuration reference `mongo-pool --help` prints. The layer ships the binary without the
//! README, so `--help` alone must say what can be set; the tests below keep it in step with the
//! variables and URI options the configuration accepts.

/// Printed after `mongo-pool --help`'s command list.
pub const HELP: &str = "\
Environment (an empty value counts as unset; an unknown MONGO_POOL_* name is an error):
  MONGO_POOL_URI            Atlas connection string (required): mongodb:// or mongodb+srv://,
                            no user or password; MONGODB-AWS with the standard AWS chain
  MONGO_POOL_SOCKET         socket path [/tmp/mongo-pool.sock]; outside Lambda its directory
                            must be owned by this user and not group/other-writable
  MONGO_POOL_SOCKET_MODE    octal mode of the socket [0600]
  MONGO_POOL_MAX_CLIENTS    concurrent downstream connections, 1..65536 [512]
  MONGO_POOL_MODE           auto | lambda | sidecar [auto: lambda when AWS_LAMBDA_RUNTIME_API is set]
  MONGO_POOL_LOG            level (off, error, warn, info, debug, trace) or target=level,...
                            [AWS_LAMBDA_LOG_LEVEL, else info]
  MONGO_POOL_LOG_FORMAT     json | text [AWS_LAMBDA_LOG_FORMAT, else json in Lambda, text elsewhere]
  MONGO_POOL_DNS_SERVER     ip:port of the resolver for mongodb+srv and member host names
  MONGO_POOL_PREWARM        off | invoke: re-validate idle connections as each invocation starts [off]
  MONGO_POOL_INIT_FAIL_FAST false | true: report Extension.ConnectFailed when no primary is
                            reachable within 7 s (or serverSelectionTimeoutMS, if less) [false]
  MONGO_POOL_SOCKET_UID     read by mongo-pool-client only: the uid that must serve the socket
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_WEB_IDENTITY_TOKEN_FILE +
  AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_FULL_URI/_RELATIVE_URI, EC2 IMDSv2: the credentials;
  AWS_REGION, AWS_ENDPOINT_URL_STS, AWS_STS_REGIONAL_ENDPOINTS: where mongo-pool asks STS to
  explain a refused authentication. NO_COLOR: no colours in text logs.

URI options applied by mongo-pool (per member, as in every driver):
  authMechanism=MONGODB-AWS, authSource=$external (the defaults, and the only values accepted),
  replicaSet, tls/ssl (on for mongodb+srv; off only to loopback hosts), tlsCAFile (a regular
  file, at most 1 MiB), appName (at most 128 bytes), minPoolSize [1], maxPoolSize 1..100 [4],
  maxConnecting 1..100 [2], maxIdleTimeMS, waitQueueTimeoutMS [5000], connectTimeoutMS [10000],
  serverSelectionTimeoutMS [15000] (timeouts > 0), heartbeatFrequencyMS >= 500 [10000],
  srvMaxHosts, srvServiceName, directConnection, loadBalanced.
  Refused: credentials in the URI, another authMechanism or authSource, authMechanismProperties,
  tlsInsecure and every option that turns certificate verification off.
  Options for the function's own driver (retryWrites, w, readPreference, ...) are ignored.

Exit status: 0 stopped cleanly (SHUTDOWN, SIGTERM) or the command succeeded; 1 a command failed
(health, check) or mongo-pool failed while running; 2 invalid configuration, or the socket could
not be taken (in use, unsafe directory, another instance).";

#[cfg(test)]
mod tests {
    use super::HELP;
    use crate::config::KNOWN_VARS;
    use crate::config::uri::POOL_OPTIONS;

    #[test]
    fn help_names_every_variable() {
        for name in KNOWN_VARS {
            assert!(HELP.contains(name), "--help does not mention {name}");
        }
    }

    #[test]
    fn help_names_every_uri_option_mongo_pool_applies() {
        for option in POOL_OPTIONS {
            assert!(HELP.contains(option), "--help does not mention {option}");
        }
    }
}
