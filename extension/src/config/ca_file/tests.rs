use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// `load(path)` on another thread, failing the test if it does not return within 10 s (a FIFO
/// opened the blocking way would never return).
fn load_bounded(path: &str) -> Result<CaCertificates, CaFileError> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(load(&owned));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("loading tlsCAFile={path} did not return within 10 s"))
}

fn not_regular(path: &str) -> (&'static str, String) {
    match load_bounded(path) {
        Err(e @ CaFileError::NotRegular { kind, .. }) => (kind, e.to_string()),
        other => panic!("{path}: expected NotRegular, got {other:?}"),
    }
}

#[test]
fn a_pem_ca_file_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mongo_pool_testkit::certs::CertAuthority::create(dir.path()).unwrap();
    let path = ca.ca_file().to_str().unwrap();
    let loaded = load_bounded(path).unwrap();
    assert_eq!(loaded.certificates().len(), 1);
    assert_eq!(loaded.path(), path);
    assert!(format!("{loaded:?}").contains("1 certificates"));
}

#[test]
fn devices_are_refused_without_reading_them() {
    for path in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let (kind, message) = not_regular(path);
        assert_eq!(kind, "a character device", "{path}");
        assert!(message.contains(path), "{message}");
        assert!(message.contains("not a regular file"), "{message}");
    }
}

#[test]
fn a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let (kind, message) = not_regular(fifo.to_str().unwrap());
    assert_eq!(kind, "a FIFO (named pipe)");
    assert!(message.contains("give the path of a PEM file"), "{message}");
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (kind, _) = not_regular(dir.path().to_str().unwrap());
    assert_eq!(kind, "a directory");
}

#[test]
fn a_file_over_one_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mongo_pool_testkit::certs::CertAuthority::create(dir.path()).unwrap();
    let pem = std::fs::read(ca.ca_file()).unwrap();
    // A valid bundle, padded with repeats of the certificate to one byte over the cap.
    let mut big = Vec::new();
    while big.len() as u64 <= MAX_CA_FILE_SIZE {
        big.extend_from_slice(&pem);
    }
    big.truncate(usize::try_from(MAX_CA_FILE_SIZE).unwrap() + 1);
    let path = dir.path().join("big.pem");
    std::fs::write(&path, &big).unwrap();
    match load_bounded(path.to_str().unwrap()) {
        Err(e @ CaFileError::TooBig { .. }) => {
            assert!(e.to_string().contains("1 MiB"), "{e}");
        }
        other => panic!("expected TooBig, got {other:?}"),
    }
    // Exactly at the cap is accepted as far as size goes (it then fails as PEM, cut short).
    big.truncate(usize::try_from(MAX_CA_FILE_SIZE).unwrap());
    std::fs::write(&path, &big).unwrap();
    assert!(!matches!(
        load_bounded(path.to_str().unwrap()),
        Err(CaFileError::TooBig { .. })
    ));
}

#[test]
fn missing_empty_or_garbage_files_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        load_bounded(missing.to_str().unwrap()),
        Err(CaFileError::Open { .. })
    ));
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = load_bounded(empty.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = load_bounded(garbage.to_str().unwrap()).unwrap_err();
    assert!(matches!(e, CaFileError::Pem { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate 1 is not usable"), "{e}");
}

#[test]
fn a_bad_ca_file_fails_the_configuration() {
    let lookup = |var: &str| {
        (var == crate::config::ENV_URI)
            .then(|| "mongodb://127.0.0.1:27017/?tls=true&tlsCAFile=%2Fdev%2Fzero".to_owned())
    };
    let e = crate::config::Config::from_lookup(lookup).unwrap_err();
    assert!(matches!(e, crate::config::ConfigError::CaFile(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "MONGO_POOL_URI: tlsCAFile /dev/zero is a character device, not a regular file: give \
         the path of a PEM file holding the CA certificates"
    );
}
