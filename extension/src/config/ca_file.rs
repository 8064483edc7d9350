//! `tlsCAFile`: the extra CA certificates, read once at start.
//!
//! Only a regular file of at most [`MAX_CA_FILE_SIZE`] bytes is read. The file is opened
//! without blocking (a FIFO would otherwise hold the start for ever) and checked with `fstat`
//! on the open descriptor, so what is read is what was checked; the read itself is bounded too
//! (`/dev/zero` or a file that grows cannot fill memory). Anything else is a configuration
//! error that says what the path is and what to give instead.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use thiserror::Error;

/// The largest `tlsCAFile` accepted: a bundle of a few hundred PEM certificates.
pub const MAX_CA_FILE_SIZE: u64 = 1024 * 1024;

/// Why `tlsCAFile` cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaFileError {
    /// It cannot be opened or inspected.
    #[error("tlsCAFile {path}: cannot open it: {source}")]
    Open {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It is a FIFO, a device, a directory or a socket.
    #[error(
        "tlsCAFile {path} is {kind}, not a regular file: give the path of a PEM file holding \
         the CA certificates"
    )]
    NotRegular {
        /// The path.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// It is larger than [`MAX_CA_FILE_SIZE`].
    #[error(
        "tlsCAFile {path} is larger than {MAX_CA_FILE_SIZE} bytes (1 MiB), far more than a CA \
         bundle: check that the path names the PEM file of the CA certificates"
    )]
    TooBig {
        /// The path.
        path: String,
    },
    /// Reading it failed.
    #[error("tlsCAFile {path}: reading it failed: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It holds no usable PEM certificate.
    #[error("tlsCAFile {path}: {cause}: give a PEM file with -----BEGIN CERTIFICATE----- blocks")]
    Pem {
        /// The path.
        path: String,
        /// What is wrong with the content.
        cause: String,
    },
}

/// The certificates of `tlsCAFile`, as loaded at start. `Debug` shows the path and the count.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificates {
    path: String,
    certificates: Vec<CertificateDer<'static>>,
}

impl CaCertificates {
    /// The path they were read from.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The certificates (DER), at least one.
    #[must_use]
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }
}

impl fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaCertificates({}: {} certificates)",
            self.path,
            self.certificates.len()
        )
    }
}

/// Reads and parses `path`.
///
/// # Errors
/// [`CaFileError`] when the path is not a regular file, is larger than [`MAX_CA_FILE_SIZE`],
/// cannot be read or holds no PEM certificate.
pub fn load(path: &str) -> Result<CaCertificates, CaFileError> {
    let bytes = read_bounded(path)?;
    let pem_err = |cause: String| CaFileError::Pem {
        path: path.to_owned(),
        cause,
    };
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_err("no PEM certificate in the file".to_owned()));
    }
    // What the connector will do with them: a block that is not an X.509 certificate fails
    // here, at start, rather than at the first connection.
    let mut roots = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|e| pem_err(format!("certificate {} is not usable: {e}", i + 1)))?;
    }
    Ok(CaCertificates {
        path: path.to_owned(),
        certificates,
    })
}

/// The content of the regular file `path`, at most [`MAX_CA_FILE_SIZE`] bytes.
fn read_bounded(path: &str) -> Result<Vec<u8>, CaFileError> {
    let open_err = |source| CaFileError::Open {
        path: path.to_owned(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It changes
    // nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| match std::fs::metadata(path) {
            // A socket cannot be opened at all: say what it is rather than ENXIO.
            Ok(m) if m.file_type().is_socket() => CaFileError::NotRegular {
                path: path.to_owned(),
                kind: "a socket",
            },
            _ => open_err(source),
        })?;
    let metadata = file.metadata().map_err(open_err)?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO (named pipe)"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(CaFileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    let too_big = || CaFileError::TooBig {
        path: path.to_owned(),
    };
    if metadata.len() > MAX_CA_FILE_SIZE {
        return Err(too_big());
    }
    // The file may grow after `fstat`: read one byte more than the cap to notice.
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CaFileError::Read {
            path: path.to_owned(),
            source,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CA_FILE_SIZE {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
