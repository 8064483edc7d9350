//! Splitting an `insert_many` into commands that fit mongo-pool's announced limits.

use std::ops::Range;

use crate::connection::Limits;
use crate::error::{Error, Result};

/// Room kept in each message for the header, the command body and the section framing.
const MESSAGE_OVERHEAD: usize = 16 * 1024;

/// Cuts documents of `sizes` bytes into consecutive batches of at most
/// `max_write_batch_size` documents and `max_message_size_bytes - overhead` bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] when one document exceeds `maxBsonObjectSize`.
pub(crate) fn split(sizes: &[usize], limits: Limits) -> Result<Vec<Range<usize>>> {
    let max_bytes = limits
        .max_message_size_bytes
        .saturating_sub(MESSAGE_OVERHEAD)
        .max(1);
    let max_count = limits.max_write_batch_size.max(1);
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if size > limits.max_bson_object_size {
            return Err(Error::InvalidArgument(format!(
                "document {i} is {size} bytes, over maxBsonObjectSize ({})",
                limits.max_bson_object_size
            )));
        }
        let count = i - start;
        if count > 0 && (count == max_count || bytes + size > max_bytes) {
            batches.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn limits(count: usize, message: usize, object: usize) -> Limits {
        Limits {
            max_write_batch_size: count,
            max_message_size_bytes: message,
            max_bson_object_size: object,
            logical_session_timeout_minutes: Some(30),
        }
    }

    #[test]
    fn batches_are_cut_at_max_write_batch_size() {
        let sizes = vec![10; 7];
        let got = split(&sizes, limits(3, 48_000_000, 1000)).unwrap();
        assert_eq!(got, vec![0..3, 3..6, 6..7]);
    }

    #[test]
    fn batches_are_cut_at_max_message_size_bytes() {
        // 1 KiB of room per message beyond the overhead: two 400-byte documents fit, not three.
        let sizes = vec![400; 5];
        let got = split(&sizes, limits(100, MESSAGE_OVERHEAD + 1024, 1000)).unwrap();
        assert_eq!(got, vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn a_document_over_max_bson_object_size_is_refused() {
        let err = split(&[10, 2000], limits(100, 48_000_000, 1000)).unwrap_err();
        assert!(err.to_string().contains("document 1"), "{err}");
    }

    #[test]
    fn no_documents_no_batches() {
        assert!(split(&[], Limits::default()).unwrap().is_empty());
    }
}
