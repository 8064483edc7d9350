//! The one error type of the crate: every way a message can be malformed.

/// Why bytes could not be read, or written, as a MongoDB wire-protocol message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The transport failed (only from the codec, which reads through tokio-util).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `messageLength` is outside `[16, max]`; checked before anything is allocated.
    #[error("message length {length} is outside the accepted range [16, {max}]")]
    MessageLength { length: i64, max: usize },
    /// The header names an op code this crate does not accept.
    #[error("unknown op code {0}")]
    UnknownOpCode(i32),
    /// The message ended before a field it must contain.
    #[error("message truncated: {0} runs past the end")]
    Truncated(&'static str),
    /// OP_MSG flag bits 0-15 that are neither checksumPresent nor moreToCome must be clear.
    #[error("OP_MSG sets unknown required flag bits {0:#06x}")]
    UnknownRequiredFlags(u32),
    /// An OP_MSG section kind other than 0 (body) or 1 (document sequence).
    #[error("unknown OP_MSG section kind {0}")]
    UnknownSectionKind(u8),
    /// An OP_MSG carries no kind-0 section.
    #[error("OP_MSG has no body section")]
    MissingBody,
    /// An OP_MSG carries more than one kind-0 section.
    #[error("OP_MSG has more than one body section")]
    DuplicateBody,
    /// A length prefix inside the message claims more bytes than its container holds.
    #[error("{0} overruns its container")]
    Overrun(&'static str),
    /// A CRC-32C checksum does not match the message.
    #[error("checksum mismatch: message says {expected:#010x}, bytes give {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    /// A C string has no terminating NUL or is not UTF-8.
    #[error("invalid C string in {0}")]
    InvalidCString(&'static str),
    /// A BSON document in the message is malformed.
    #[error("invalid BSON in {what}: {source}")]
    Bson {
        what: &'static str,
        #[source]
        source: bson::error::Error,
    },
    /// A BSON document is well framed but invalid inside (see [`crate::validate`]).
    #[error("invalid BSON in {what}: {source}")]
    InvalidBson {
        what: &'static str,
        #[source]
        source: crate::validate::InvalidBson,
    },
    /// A field of a command or reply has the wrong BSON type.
    #[error("field `{field}` should be {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
    /// The operation needs another op code (e.g. a flag edit on a non-OP_MSG frame).
    #[error("expected {expected}, found op code {found}")]
    WrongOpCode { expected: &'static str, found: i32 },
    /// OP_COMPRESSED names a compressor id other than 0-3.
    #[error("unknown compressor id {0}")]
    UnknownCompressor(u8),
    /// OP_COMPRESSED wraps something that may not be compressed, or nests itself.
    #[error("OP_COMPRESSED may not wrap op code {0}")]
    InvalidOriginalOpCode(i32),
    /// The payload does not decompress to the size the header claims.
    #[error("decompression failed: {0}")]
    Decompress(String),
}

impl WireError {
    pub(crate) fn bson(what: &'static str) -> impl FnOnce(bson::error::Error) -> WireError {
        move |source| WireError::Bson { what, source }
    }
}
