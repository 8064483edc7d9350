//! OP_QUERY (2004), which current drivers send only for their first `hello`/`isMaster`:
//! `i32 flags | cstring fullCollectionName | i32 numberToSkip | i32 numberToReturn |
//! document query | [document returnFieldsSelector]`.

use bson::RawDocument;
use bytes::BytesMut;

use crate::WireError;
use crate::frame::Frame;
use crate::header::OpCode;
use crate::reader::Reader;

/// A parsed OP_QUERY, borrowing from its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OpQuery<'a> {
    /// Query flags (tailable, slaveOk, ...).
    pub flags: i32,
    /// `db.collection`; `admin.$cmd` for a command.
    pub full_collection_name: &'a str,
    /// `numberToSkip`.
    pub number_to_skip: i32,
    /// `numberToReturn`.
    pub number_to_return: i32,
    /// The query, or for `db.$cmd` the command.
    pub query: &'a RawDocument,
    /// `returnFieldsSelector`, when present.
    pub return_fields_selector: Option<&'a RawDocument>,
}

impl<'a> OpQuery<'a> {
    /// Parses the bytes after the header.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::InvalidCString`], [`WireError::Overrun`],
    /// [`WireError::Bson`], and [`WireError::Overrun`] for bytes after the last document.
    pub fn parse(body: &'a [u8]) -> Result<OpQuery<'a>, WireError> {
        let mut reader = Reader::new(body);
        let flags = reader.i32("OP_QUERY flags")?;
        let full_collection_name = reader.cstr("fullCollectionName")?;
        let number_to_skip = reader.i32("numberToSkip")?;
        let number_to_return = reader.i32("numberToReturn")?;
        let query = reader.document("OP_QUERY query")?;
        let return_fields_selector = if reader.is_empty() {
            None
        } else {
            Some(reader.document("returnFieldsSelector")?)
        };
        if !reader.is_empty() {
            return Err(WireError::Overrun("OP_QUERY"));
        }
        Ok(OpQuery {
            flags,
            full_collection_name,
            number_to_skip,
            number_to_return,
            query,
            return_fields_selector,
        })
    }

    /// Validates the query and the selector, nesting at most `max_depth` levels
    /// ([`crate::validate::document`]).
    ///
    /// # Errors
    /// [`WireError::InvalidBson`] for the first invalid document.
    pub fn validate(&self, max_depth: usize) -> Result<(), WireError> {
        let checks = [
            ("OP_QUERY query", Some(self.query)),
            ("returnFieldsSelector", self.return_fields_selector),
        ];
        for (what, doc) in checks {
            if let Some(doc) = doc {
                crate::validate::document(doc, max_depth)
                    .map_err(|source| WireError::InvalidBson { what, source })?;
            }
        }
        Ok(())
    }

    /// The database of a command (`admin` for `admin.$cmd`), or `None` when the collection
    /// name is not `<db>.$cmd`.
    pub fn command_db(&self) -> Option<&'a str> {
        self.full_collection_name.strip_suffix(".$cmd")
    }
}

/// Builds an OP_QUERY frame (the handshake form drivers use).
#[derive(Debug, Clone)]
pub struct OpQueryBuilder<'a> {
    request_id: i32,
    flags: i32,
    full_collection_name: &'a str,
    number_to_return: i32,
    query: &'a RawDocument,
}

impl<'a> OpQueryBuilder<'a> {
    /// A command query on `<db>.$cmd` style collection name, `numberToReturn` -1.
    pub fn new(full_collection_name: &'a str, query: &'a RawDocument) -> Self {
        Self {
            request_id: 0,
            flags: 0,
            full_collection_name,
            number_to_return: -1,
            query,
        }
    }
    /// Sets `requestID`.
    #[must_use]
    pub fn request_id(mut self, id: i32) -> Self {
        self.request_id = id;
        self
    }
    /// Sets the flags word.
    #[must_use]
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Encodes the message.
    ///
    /// # Errors
    /// [`WireError::InvalidCString`] when the collection name holds a NUL;
    /// [`WireError::MessageLength`] when the message is too large.
    pub fn build(self) -> Result<Frame, WireError> {
        if self.full_collection_name.contains('\0') {
            return Err(WireError::InvalidCString("fullCollectionName"));
        }
        let mut body = BytesMut::new();
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(self.full_collection_name.as_bytes());
        body.extend_from_slice(&[0]);
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&self.number_to_return.to_le_bytes());
        body.extend_from_slice(self.query.as_bytes());
        Frame::build(self.request_id, 0, OpCode::Query, &body)
    }
}
