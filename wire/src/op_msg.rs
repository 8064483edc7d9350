//! OP_MSG (2013): `header | u32 flagBits | sections | [u32 CRC-32C]`.
//!
//! A kind-0 section is the command or reply body (exactly one); a kind-1 section is a document
//! sequence (`i32 size | cstring identifier | documents`) that bulk writes use for `documents`,
//! `updates` and `deletes`.

use bson::RawDocument;
use bytes::BytesMut;

use crate::frame::Frame;
use crate::header::{HEADER_LEN, Header, OpCode, check_length};
use crate::reader::{Reader, put_i32};
use crate::validate;
use crate::{MAX_MESSAGE_SIZE, WireError};

/// The OP_MSG flag word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgFlags(u32);

impl MsgFlags {
    /// Bit 0: a CRC-32C checksum follows the sections.
    pub const CHECKSUM_PRESENT: MsgFlags = MsgFlags(1);
    /// Bit 1: the sender will send another message without waiting for a reply.
    pub const MORE_TO_COME: MsgFlags = MsgFlags(1 << 1);
    /// Bit 16: the requester accepts several replies (exhaust cursors, streaming hello).
    pub const EXHAUST_ALLOWED: MsgFlags = MsgFlags(1 << 16);
    /// Bits 0-15 a receiver must understand; any other bit among them is an error.
    const KNOWN_REQUIRED: u32 = 0b11;
    const REQUIRED_MASK: u32 = 0xffff;

    /// No flag set.
    pub const fn empty() -> Self {
        MsgFlags(0)
    }
    /// Flags from their word.
    pub const fn from_bits(bits: u32) -> Self {
        MsgFlags(bits)
    }
    /// The word.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: MsgFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// These flags plus `other`.
    #[must_use]
    pub const fn with(self, other: MsgFlags) -> Self {
        MsgFlags(self.0 | other.0)
    }
    /// These flags without `other`.
    #[must_use]
    pub const fn without(self, other: MsgFlags) -> Self {
        MsgFlags(self.0 & !other.0)
    }
    fn unknown_required(self) -> u32 {
        self.0 & Self::REQUIRED_MASK & !Self::KNOWN_REQUIRED
    }
}

/// A kind-1 section: documents under one identifier, already checked to be well framed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DocumentSequence<'a> {
    /// The command field the documents belong to (`documents`, `updates`, `deletes`).
    pub identifier: &'a str,
    documents: &'a [u8],
}

impl<'a> DocumentSequence<'a> {
    /// The documents, in order.
    pub fn documents(&self) -> impl Iterator<Item = &'a RawDocument> + 'a {
        let mut reader = Reader::new(self.documents);
        // Every document was framed and checked by `OpMsg::parse`.
        std::iter::from_fn(move || {
            if reader.is_empty() {
                None
            } else {
                reader.document("document sequence").ok()
            }
        })
    }

    /// The raw bytes of the documents, back to back.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.documents
    }
}

/// A parsed OP_MSG, borrowing from its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg<'a> {
    /// The flag word.
    pub flags: MsgFlags,
    /// The kind-0 section.
    pub body: &'a RawDocument,
    /// The kind-1 sections, in order.
    pub sequences: Vec<DocumentSequence<'a>>,
    /// The checksum the message carries, already verified.
    pub checksum: Option<u32>,
}

/// CRC-32C (Castagnoli) of `bytes`.
pub(crate) fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

impl<'a> OpMsg<'a> {
    /// Parses a whole OP_MSG message (header included), verifying the checksum when present.
    ///
    /// # Errors
    /// [`WireError::UnknownRequiredFlags`], [`WireError::ChecksumMismatch`],
    /// [`WireError::UnknownSectionKind`], [`WireError::MissingBody`],
    /// [`WireError::DuplicateBody`], [`WireError::Overrun`], [`WireError::Truncated`],
    /// [`WireError::InvalidCString`], [`WireError::Bson`].
    pub fn parse(message: &'a [u8]) -> Result<OpMsg<'a>, WireError> {
        let mut reader = Reader::new(message);
        reader.take(HEADER_LEN, "header")?;
        let flags = MsgFlags::from_bits(reader.u32("flagBits")?);
        if flags.unknown_required() != 0 {
            return Err(WireError::UnknownRequiredFlags(flags.unknown_required()));
        }
        let mut sections = reader.rest();
        let mut checksum = None;
        if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
            let split = sections
                .len()
                .checked_sub(4)
                .ok_or(WireError::Truncated("checksum"))?;
            let (rest, crc) = sections.split_at(split);
            let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            let actual = crc32c_of(&message[..message.len() - 4]);
            if expected != actual {
                return Err(WireError::ChecksumMismatch { expected, actual });
            }
            checksum = Some(expected);
            sections = rest;
        }
        let mut reader = Reader::new(sections);
        let mut body = None;
        let mut sequences = Vec::new();
        while !reader.is_empty() {
            match reader.u8("section kind")? {
                0 => {
                    let doc = reader.document("body section")?;
                    if body.replace(doc).is_some() {
                        return Err(WireError::DuplicateBody);
                    }
                }
                1 => sequences.push(parse_sequence(&mut reader)?),
                kind => return Err(WireError::UnknownSectionKind(kind)),
            }
        }
        let body = body.ok_or(WireError::MissingBody)?;
        Ok(OpMsg {
            flags,
            body,
            sequences,
            checksum,
        })
    }

    /// Validates every document the message carries, the body and each document of each
    /// kind-1 section, nesting at most `max_depth` levels ([`crate::validate::document`]).
    ///
    /// # Errors
    /// [`WireError::InvalidBson`] for the first invalid document.
    pub fn validate(&self, max_depth: usize) -> Result<(), WireError> {
        validate::document(self.body, max_depth).map_err(|source| WireError::InvalidBson {
            what: "body section",
            source,
        })?;
        for sequence in &self.sequences {
            for doc in sequence.documents() {
                validate::document(doc, max_depth).map_err(|source| WireError::InvalidBson {
                    what: "document sequence",
                    source,
                })?;
            }
        }
        Ok(())
    }
}

fn parse_sequence<'a>(reader: &mut Reader<'a>) -> Result<DocumentSequence<'a>, WireError> {
    let size = reader.i32("document sequence size")?;
    // The size counts itself; the identifier needs at least its NUL.
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s >= 5)
        .ok_or(WireError::Overrun("document sequence"))?;
    if size - 4 > reader.remaining() {
        return Err(WireError::Overrun("document sequence"));
    }
    let mut section = Reader::new(reader.take(size - 4, "document sequence")?);
    let identifier = section.cstr("document sequence identifier")?;
    let documents = section.rest();
    let mut check = Reader::new(documents);
    while !check.is_empty() {
        check.document("document sequence")?;
    }
    Ok(DocumentSequence {
        identifier,
        documents,
    })
}

/// Builds an OP_MSG frame from a body and optional document sequences.
#[derive(Debug, Clone)]
pub struct OpMsgBuilder<'a> {
    request_id: i32,
    response_to: i32,
    flags: MsgFlags,
    body: &'a RawDocument,
    sequences: Vec<(&'a str, Vec<&'a RawDocument>)>,
    checksum: bool,
}

impl<'a> OpMsgBuilder<'a> {
    /// A message with this body, ids 0, no flags.
    pub fn new(body: &'a RawDocument) -> Self {
        Self {
            request_id: 0,
            response_to: 0,
            flags: MsgFlags::empty(),
            body,
            sequences: Vec::new(),
            checksum: false,
        }
    }
    /// Sets `requestID`.
    #[must_use]
    pub fn request_id(mut self, id: i32) -> Self {
        self.request_id = id;
        self
    }
    /// Sets `responseTo`.
    #[must_use]
    pub fn response_to(mut self, id: i32) -> Self {
        self.response_to = id;
        self
    }
    /// Sets flags (the checksum flag is managed by [`OpMsgBuilder::checksum`]).
    #[must_use]
    pub fn flags(mut self, flags: MsgFlags) -> Self {
        self.flags = flags.without(MsgFlags::CHECKSUM_PRESENT);
        self
    }
    /// Adds a kind-1 section.
    #[must_use]
    pub fn sequence(mut self, identifier: &'a str, documents: Vec<&'a RawDocument>) -> Self {
        self.sequences.push((identifier, documents));
        self
    }
    /// Appends a CRC-32C checksum.
    #[must_use]
    pub fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Encodes the message.
    ///
    /// # Errors
    /// [`WireError::MessageLength`] when it would exceed `MAX_MESSAGE_SIZE`;
    /// [`WireError::InvalidCString`] when an identifier contains a NUL;
    /// [`WireError::UnknownRequiredFlags`] when a flag bit below 16 that the protocol does not
    /// define is set (a peer would have to refuse the message, as [`OpMsg::parse`] does).
    pub fn build(self) -> Result<Frame, WireError> {
        let unknown = self.flags.unknown_required();
        if unknown != 0 {
            return Err(WireError::UnknownRequiredFlags(unknown));
        }
        let mut total = HEADER_LEN + 4 + 1 + self.body.as_bytes().len();
        for (identifier, docs) in &self.sequences {
            if identifier.contains('\0') {
                return Err(WireError::InvalidCString("document sequence identifier"));
            }
            total += 1 + 4 + identifier.len() + 1;
            total += docs.iter().map(|d| d.as_bytes().len()).sum::<usize>();
        }
        if self.checksum {
            total += 4;
        }
        let length = i32::try_from(total).unwrap_or(i32::MAX);
        check_length(length, MAX_MESSAGE_SIZE)?;
        let flags = if self.checksum {
            self.flags.with(MsgFlags::CHECKSUM_PRESENT)
        } else {
            self.flags
        };
        let mut bytes = BytesMut::with_capacity(total);
        let header = Header {
            message_length: length,
            request_id: self.request_id,
            response_to: self.response_to,
            op_code: OpCode::Msg,
        };
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(&flags.bits().to_le_bytes());
        bytes.extend_from_slice(&[0]);
        bytes.extend_from_slice(self.body.as_bytes());
        for (identifier, docs) in &self.sequences {
            bytes.extend_from_slice(&[1]);
            let size_at = bytes.len();
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(identifier.as_bytes());
            bytes.extend_from_slice(&[0]);
            for doc in docs {
                bytes.extend_from_slice(doc.as_bytes());
            }
            let size = i32::try_from(bytes.len() - size_at).unwrap_or(i32::MAX);
            put_i32(&mut bytes, size_at, size);
        }
        if self.checksum {
            let crc = crc32c_of(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
        }
        Ok(Frame::from_built(bytes, OpCode::Msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine_and_report_unknown_required_bits() {
        let flags = MsgFlags::CHECKSUM_PRESENT.with(MsgFlags::EXHAUST_ALLOWED);
        assert_eq!(flags.bits(), 0x0001_0001);
        assert!(flags.contains(MsgFlags::CHECKSUM_PRESENT));
        assert!(!flags.contains(MsgFlags::MORE_TO_COME));
        assert_eq!(
            flags.without(MsgFlags::CHECKSUM_PRESENT),
            MsgFlags::EXHAUST_ALLOWED
        );
        assert_eq!(MsgFlags::default(), MsgFlags::empty());
        assert_eq!(MsgFlags::from_bits(0xffff_0003).unknown_required(), 0);
        assert_eq!(MsgFlags::from_bits(0x0000_8004).unknown_required(), 0x8004);
    }

    #[test]
    fn crc32c_of_matches_the_check_value() {
        assert_eq!(crc32c_of(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn document_sequence_iterates_its_documents() {
        let a = bson::rawdoc! { "a": 1 };
        let b = bson::rawdoc! { "b": "x" };
        let body = bson::rawdoc! { "insert": "c", "$db": "d" };
        let frame = OpMsgBuilder::new(&body)
            .sequence("documents", vec![&a, &b])
            .build()
            .unwrap();
        let msg = frame.op_msg().unwrap();
        let docs: Vec<&RawDocument> = msg.sequences[0].documents().collect();
        assert_eq!(docs, vec![a.as_ref(), b.as_ref()]);
    }

    #[test]
    fn validate_checks_the_body_and_every_sequence_document() {
        let good = bson::rawdoc! { "a": { "s": "x" } };
        let body = bson::rawdoc! { "insert": "c", "$db": "d" };
        let frame = OpMsgBuilder::new(&body)
            .sequence("documents", vec![&good, &good])
            .build()
            .unwrap();
        assert!(frame.op_msg().unwrap().validate(200).is_ok());
        // The second sequence document's nested string loses its NUL.
        let mut bytes = frame.as_bytes().to_vec();
        let last_x = bytes.windows(2).rposition(|w| w == b"x\0").unwrap();
        bytes[last_x + 1] = b'y';
        let bad = Frame::from_bytes(BytesMut::from(&bytes[..]), MAX_MESSAGE_SIZE).unwrap();
        let msg = bad.op_msg().unwrap();
        assert!(matches!(
            msg.validate(200),
            Err(WireError::InvalidBson {
                what: "document sequence",
                ..
            })
        ));
        // Nesting beyond the cap in the body.
        let deep = bson::rawdoc! { "ping": 1, "x": { "y": { "z": {} } } };
        let frame = OpMsgBuilder::new(&deep).build().unwrap();
        assert!(frame.op_msg().unwrap().validate(4).is_ok());
        assert!(frame.op_msg().unwrap().validate(3).is_err());
    }
}
