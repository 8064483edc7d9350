//! Identifiers and clocks as Lambda shapes them: UUID request and extension ids, X-Ray trace
//! ids, epoch milliseconds, log stream names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID, lower-case with dashes.
pub(crate) fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `8-4-4-4-12` hex digits.
pub(crate) fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn epoch_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// An X-Ray trace header value: `Root=1-<epoch s hex>-<24 hex>;Parent=<16 hex>;Sampled=0`.
pub(crate) fn trace_id() -> String {
    let root: [u8; 12] = rand::random();
    let parent: [u8; 8] = rand::random();
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        epoch_ms() / 1000,
        hex::encode(root),
        hex::encode(parent)
    )
}

/// `YYYY/MM/DD/[$LATEST]<32 hex>`, as Lambda names log streams.
pub(crate) fn log_stream_name(version: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    let id: [u8; 16] = rand::random();
    format!(
        "{:04}/{:02}/{:02}/[{version}]{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        hex::encode(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_uuid_shape() {
        let id = uuid_v4();
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("0000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn trace_ids_have_root_parent_and_sampled() {
        let trace = trace_id();
        let parts: Vec<&str> = trace.split(';').collect();
        assert_eq!(parts.len(), 3, "{trace}");
        assert!(parts[0].starts_with("Root=1-") && parts[0].len() == "Root=1-".len() + 8 + 1 + 24);
        assert!(parts[1].starts_with("Parent=") && parts[1].len() == "Parent=".len() + 16);
        assert_eq!(parts[2], "Sampled=0");
    }
}
