//! Throwaway TLS PKI for the test rig: a fresh certificate authority per run and server
//! certificates signed by it, written as PEM files, plus the rustls `ServerConfig` atlas-sim
//! serves with.
//!
//! Data flow: a test (or atlas-sim at start-up) calls [`generate`] into a temporary directory;
//! atlas-sim loads `server.pem`/`server-key.pem` through [`server_config`]; downstream clients
//! trust `ca.pem`. A test that needs a certificate for another host (a wrong-host check) calls
//! [`generate_with_names`] on the same directory: it loads the CA that [`generate`] left there
//! (`ca.pem` + `ca-key.pem`) and signs a second certificate with it.
//!
//! Everything here uses the ring crypto provider; keys are ECDSA P-256.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// File name of the CA certificate inside the directory given to [`generate`].
pub const CA_FILE: &str = "ca.pem";
/// File name of the CA private key (kept so that more certificates can be issued later).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File stem of the default server certificate: `server.pem` and `server-key.pem`.
pub const SERVER_STEM: &str = "server";

const CA_COMMON_NAME: &str = "atlas-sim test CA";
/// How long issued certificates stay valid; a test rig run is far shorter.
const VALIDITY: time::Duration = time::Duration::days(30);
/// Back-dating, so that small clock differences never make a fresh certificate "not yet valid".
const BACKDATE: time::Duration = time::Duration::hours(1);

/// The files one certificate issuance produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The CA certificate (PEM) that downstream clients trust.
    pub ca_file: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert_file: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub key_file: PathBuf,
}

/// Why generating or loading TLS material failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing a PEM file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// "writing" or "reading".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying IO error.
        source: io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("parsing PEM file {path}: {reason}")]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls rejected the certificate/key pair or the protocol versions.
    #[error("building the rustls server config: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate authority whose key is at hand, able to issue more certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    ca_file: PathBuf,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("dir", &self.dir)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Creates a fresh CA and writes `ca.pem` and `ca-key.pem` into `dir` (created if missing).
    ///
    /// # Errors
    /// [`CertError::Generate`] if key generation or signing fails, [`CertError::Io`] if the
    /// files cannot be written.
    pub fn create(dir: &Path) -> Result<Self, CertError> {
        create_dir(dir)?;
        let key = KeyPair::generate()?;
        let params = ca_params()?;
        let cert = params.self_signed(&key)?;
        let ca_file = dir.join(CA_FILE);
        write(&ca_file, cert.pem())?;
        write(&dir.join(CA_KEY_FILE), key.serialize_pem())?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            ca_file,
        })
    }

    /// Loads the CA that [`CertAuthority::create`] (or [`generate`]) wrote into `dir`.
    ///
    /// # Errors
    /// [`CertError::Io`] if `ca.pem` or `ca-key.pem` cannot be read, [`CertError::Generate`]
    /// if the key does not parse.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let ca_file = dir.join(CA_FILE);
        let key_file = dir.join(CA_KEY_FILE);
        // The CA certificate must be there too: issued certificates are useless without it.
        read(&ca_file)?;
        let key = KeyPair::from_pem(&read(&key_file)?)?;
        // The issuer name and key identifier are derived deterministically from the parameters
        // and the key, so rebuilding the parameters reproduces the same issuer.
        Ok(Self {
            issuer: Issuer::new(ca_params()?, key),
            dir: dir.to_path_buf(),
            ca_file,
        })
    }

    /// The CA certificate file (PEM).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses), plus `127.0.0.1`,
    /// `::1` and `localhost` when `include_loopback`, and writes `<stem>.pem` and
    /// `<stem>-key.pem` into the CA's directory.
    ///
    /// # Errors
    /// [`CertError::Generate`] for a name rcgen cannot encode or a signing failure,
    /// [`CertError::Io`] if the files cannot be written.
    pub fn issue(
        &self,
        stem: &str,
        names: &[String],
        include_loopback: bool,
    ) -> Result<CertPaths, CertError> {
        let mut sans: Vec<String> = Vec::new();
        if include_loopback {
            sans.extend(["127.0.0.1", "::1", "localhost"].map(String::from));
        }
        for name in names {
            if !sans.contains(name) {
                sans.push(name.clone());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        let common_name = names
            .first()
            .map_or("localhost", String::as_str)
            .to_string();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_file = self.dir.join(format!("{stem}.pem"));
        let key_file = self.dir.join(format!("{stem}-key.pem"));
        write(&cert_file, cert.pem())?;
        write(&key_file, key.serialize_pem())?;
        Ok(CertPaths {
            ca_file: self.ca_file.clone(),
            cert_file,
            key_file,
        })
    }
}

/// Writes a fresh CA (`ca.pem`, `ca-key.pem`) and a server certificate signed by it
/// (`server.pem`, `server-key.pem`) into `dir`, valid for `127.0.0.1`, `::1`, `localhost` and
/// every name in `extra_names`.
///
/// # Errors
/// See [`CertAuthority::create`] and [`CertAuthority::issue`].
pub fn generate(dir: &Path, extra_names: &[String]) -> Result<CertPaths, CertError> {
    CertAuthority::create(dir)?.issue(SERVER_STEM, extra_names, true)
}

/// Issues one more certificate, for `names` only (plus loopback when `include_loopback`),
/// signed by the CA that [`generate`] wrote into `dir`, as `<stem>.pem` / `<stem>-key.pem`.
/// Use it for a certificate a client must reject, e.g. `names = ["wrong.example"]`,
/// `include_loopback = false`.
///
/// # Errors
/// See [`CertAuthority::load`] and [`CertAuthority::issue`].
pub fn generate_with_names(
    dir: &Path,
    stem: &str,
    names: &[String],
    include_loopback: bool,
) -> Result<CertPaths, CertError> {
    CertAuthority::load(dir)?.issue(stem, names, include_loopback)
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, no client certificates)
/// presenting `paths.cert_file` with `paths.key_file`.
///
/// # Errors
/// [`CertError::Io`]/[`CertError::Pem`] for unreadable files, [`CertError::Rustls`] if rustls
/// rejects the pair.
pub fn server_config(paths: &CertPaths) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let chain = load_certs(&paths.cert_file)?;
    let key = load_key(&paths.key_file)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) trusting only the CA in
/// `ca_file`; for tests and helpers that talk TLS to atlas-sim.
///
/// # Errors
/// [`CertError::Io`]/[`CertError::Pem`] for an unreadable CA file, [`CertError::Rustls`] if
/// rustls rejects the certificate.
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_file)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn ca_params() -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "mongo-pool test rig");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CertError::Pem {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    // The key's bytes never reach the error: only the parser's description does.
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|err| CertError::Pem {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        action: "creating",
        path: dir.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: String) -> Result<(), CertError> {
    fs::write(path, contents).map_err(|source| CertError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Serves one TLS connection that echoes one byte, then connects to it as `server_name`.
    async fn handshake(paths: &CertPaths, ca_file: &Path, server_name: &str) -> anyhow::Result<()> {
        let acceptor = TlsAcceptor::from(server_config(paths)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            tls.write_all(&byte).await?;
            tls.shutdown().await?;
            anyhow::Ok(())
        });
        let connector = TlsConnector::from(client_config(ca_file)?);
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name.to_string())?;
        let result = async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"x").await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            anyhow::ensure!(&byte == b"x", "echo mismatch");
            anyhow::Ok(())
        }
        .await;
        if result.is_ok() {
            server.await??;
        } else {
            server.abort();
        }
        result
    }

    #[tokio::test]
    async fn client_trusting_the_ca_connects_over_loopback_names() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let paths = generate(dir.path(), &["cluster0-shard-00-00.sim.test".to_string()])?;
        for name in ["127.0.0.1", "localhost", "cluster0-shard-00-00.sim.test"] {
            handshake(&paths, &paths.ca_file, name).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn client_rejects_a_certificate_for_another_host() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let good = generate(dir.path(), &[])?;
        let wrong =
            generate_with_names(dir.path(), "wrong", &["wrong.example".to_string()], false)?;
        assert_eq!(wrong.ca_file, good.ca_file);
        // Signed by the same CA: valid for its own name...
        handshake(&wrong, &good.ca_file, "wrong.example").await?;
        // ...but not for the address or name the client dialled.
        for name in ["127.0.0.1", "localhost"] {
            let err = handshake(&wrong, &good.ca_file, name)
                .await
                .err()
                .map(|err| err.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("NotValidForName") || err.contains("not valid for"),
                "expected a name mismatch for {name}, got {err:?}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn client_rejects_a_certificate_from_another_ca() -> anyhow::Result<()> {
        let ours = tempfile::tempdir()?;
        let theirs = tempfile::tempdir()?;
        let ours = generate(ours.path(), &[])?;
        let theirs = generate(theirs.path(), &[])?;
        let err = handshake(&theirs, &ours.ca_file, "localhost").await;
        assert!(
            err.is_err(),
            "a certificate from another CA must be rejected"
        );
        Ok(())
    }

    #[test]
    fn generate_writes_the_three_pem_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let paths = generate(dir.path(), &[])?;
        assert!(fs::read_to_string(&paths.ca_file)?.contains("BEGIN CERTIFICATE"));
        assert!(fs::read_to_string(&paths.cert_file)?.contains("BEGIN CERTIFICATE"));
        assert!(fs::read_to_string(&paths.key_file)?.contains("PRIVATE KEY"));
        assert_eq!(paths.cert_file, dir.path().join("server.pem"));
        assert_eq!(paths.key_file, dir.path().join("server-key.pem"));
        Ok(())
    }
}
