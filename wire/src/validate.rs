//! Whole-document BSON validation for bytes from an untrusted peer, before they go anywhere.
//!
//! `bson`'s [`RawDocument`] checks only a document's outer length and trailing NUL, and its
//! iterator checks an element only when it is reached: a proxy that reads a few routing fields
//! would forward the rest unchecked, and the server would then close the connection on it.
//! [`document`] checks every byte once: each element type is known; each length lies inside its
//! container; strings, keys and regular expressions are NUL-terminated UTF-8; booleans are 0 or
//! 1; old-style binary and code-with-scope lengths agree with their parts; and nesting
//! (documents, arrays, code-with-scope scopes) stays within a depth cap.
//!
//! It never recurses: an explicit stack of open documents, at most `max_depth` long, stands in
//! for the call stack, so a 10,000-level document costs a few bytes per level up to the cap and
//! is refused there.

use bson::RawDocument;

/// The deepest nesting accepted in a request (the top-level document counts as one): the
/// server's own limit for BSON in a command (`maxBSONDepth`, 200). Documents it stores may
/// nest 100 levels, so an insert or update of any storable document fits inside a command.
pub const MAX_REQUEST_DEPTH: usize = 200;

/// Where and why a document is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct InvalidBson {
    /// Offset of the offending element or length, from the start of the document.
    pub offset: usize,
    /// What is wrong there.
    pub problem: Problem,
}

/// What is wrong with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A length prefix claims more bytes than its container holds, or fewer than its minimum.
    #[error("a length that does not fit its container")]
    Length,
    /// A document or array does not end with a NUL byte where its length says it ends.
    #[error("a document without its terminating NUL")]
    Unterminated,
    /// A key or C string has no NUL before the end of its document.
    #[error("a key or C string without its terminating NUL")]
    CString,
    /// A string has no NUL where its length says it ends.
    #[error("a string without its terminating NUL")]
    String,
    /// A key or string is not UTF-8.
    #[error("a key or string that is not valid UTF-8")]
    Utf8,
    /// An element type BSON does not have.
    #[error("unknown element type {0:#04x}")]
    ElementType(u8),
    /// A boolean byte other than 0 or 1.
    #[error("a boolean that is neither 0 nor 1 ({0})")]
    Boolean(u8),
    /// Old binary (subtype 2) whose inner length disagrees with the outer one.
    #[error("old binary (subtype 2) whose inner length disagrees with its size")]
    OldBinary,
    /// Code-with-scope whose total length disagrees with its code and scope.
    #[error("code-with-scope whose length disagrees with its code and scope")]
    CodeWithScope,
    /// Nesting deeper than the cap.
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
}

fn fail(offset: usize, problem: Problem) -> InvalidBson {
    InvalidBson { offset, problem }
}

/// Checks every byte of `doc`, nesting at most `max_depth` levels (the document itself is
/// level 1).
///
/// # Errors
/// [`InvalidBson`] for the first problem found.
pub fn document(doc: &RawDocument, max_depth: usize) -> Result<(), InvalidBson> {
    Validator {
        bytes: doc.as_bytes(),
        max_depth,
        open: Vec::new(),
    }
    .run()
}

/// Validation state: the bytes and the documents currently open, innermost last.
struct Validator<'a> {
    bytes: &'a [u8],
    max_depth: usize,
    /// For each open document, the offset of its terminating NUL.
    open: Vec<usize>,
}

impl Validator<'_> {
    fn run(mut self) -> Result<(), InvalidBson> {
        let mut pos = self.open_document(0, self.bytes.len())?;
        while let Some(&end) = self.open.last() {
            if pos == end {
                // The terminator, checked when the document was opened.
                self.open.pop();
                pos += 1;
                continue;
            }
            pos = self.element(pos, end)?;
        }
        if pos == self.bytes.len() {
            Ok(())
        } else {
            Err(fail(pos, Problem::Length))
        }
    }

    /// Opens the document at `at`, which must end by `limit`; returns where its first element
    /// starts.
    fn open_document(&mut self, at: usize, limit: usize) -> Result<usize, InvalidBson> {
        if self.open.len() >= self.max_depth {
            return Err(fail(at, Problem::TooDeep(self.max_depth)));
        }
        let len = self.length(at, limit)?;
        if len < 5 {
            return Err(fail(at, Problem::Length));
        }
        let end = at + len - 1;
        if self.bytes[end] != 0 {
            return Err(fail(at, Problem::Unterminated));
        }
        self.open.push(end);
        Ok(at + 4)
    }

    /// A non-negative i32 length at `at` whose span from `at` ends by `limit`.
    fn length(&self, at: usize, limit: usize) -> Result<usize, InvalidBson> {
        let raw = self.i32_at(at, limit)?;
        let len = usize::try_from(raw).map_err(|_| fail(at, Problem::Length))?;
        if len > limit - at {
            return Err(fail(at, Problem::Length));
        }
        Ok(len)
    }

    fn i32_at(&self, at: usize, limit: usize) -> Result<i32, InvalidBson> {
        match self.bytes.get(at..at + 4) {
            Some(b) if at + 4 <= limit => Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => Err(fail(at, Problem::Length)),
        }
    }

    /// `n` bytes at `at`, inside the document that ends (its NUL) at `end`.
    fn fixed(at: usize, n: usize, end: usize) -> Result<usize, InvalidBson> {
        if n > end - at {
            Err(fail(at, Problem::Length))
        } else {
            Ok(at + n)
        }
    }

    /// A C string at `at` ending before `end`; returns the offset after its NUL.
    fn cstring(&self, at: usize, end: usize) -> Result<usize, InvalidBson> {
        let nul = self.bytes[at..end]
            .iter()
            .position(|&b| b == 0)
            .ok_or(fail(at, Problem::CString))?;
        std::str::from_utf8(&self.bytes[at..at + nul]).map_err(|_| fail(at, Problem::Utf8))?;
        Ok(at + nul + 1)
    }

    /// A length-prefixed string at `at` ending by `limit`; returns the offset after it.
    fn string(&self, at: usize, limit: usize) -> Result<usize, InvalidBson> {
        let len = self.length(at, limit)?;
        // The length counts the NUL, not itself.
        if len == 0 || len > limit - at - 4 {
            return Err(fail(at, Problem::Length));
        }
        let start = at + 4;
        let nul = start + len - 1;
        if self.bytes[nul] != 0 {
            return Err(fail(at, Problem::String));
        }
        std::str::from_utf8(&self.bytes[start..nul]).map_err(|_| fail(at, Problem::Utf8))?;
        Ok(nul + 1)
    }

    /// The element at `at` in the document whose NUL is at `end`; returns the offset after it
    /// (or, for a nested document, after its length: its elements come next).
    fn element(&mut self, at: usize, end: usize) -> Result<usize, InvalidBson> {
        let kind = self.bytes[at];
        let value = self.cstring(at + 1, end)?;
        match kind {
            // double, UTC datetime, timestamp, int64
            0x01 | 0x09 | 0x11 | 0x12 => Self::fixed(value, 8, end),
            // int32
            0x10 => Self::fixed(value, 4, end),
            // ObjectId
            0x07 => Self::fixed(value, 12, end),
            // decimal128
            0x13 => Self::fixed(value, 16, end),
            // undefined, null, min key, max key
            0x06 | 0x0A | 0xFF | 0x7F => Ok(value),
            0x08 => {
                let next = Self::fixed(value, 1, end)?;
                match self.bytes[value] {
                    0 | 1 => Ok(next),
                    other => Err(fail(value, Problem::Boolean(other))),
                }
            }
            // string, JavaScript code, symbol
            0x02 | 0x0D | 0x0E => self.string(value, end),
            // regular expression: pattern, options
            0x0B => {
                let options = self.cstring(value, end)?;
                self.cstring(options, end)
            }
            // DBPointer: namespace, ObjectId
            0x0C => {
                let id = self.string(value, end)?;
                Self::fixed(id, 12, end)
            }
            // embedded document, array
            0x03 | 0x04 => self.open_document(value, end),
            0x05 => self.binary(value, end),
            0x0F => self.code_with_scope(value, end),
            other => Err(fail(at, Problem::ElementType(other))),
        }
    }

    fn binary(&self, at: usize, end: usize) -> Result<usize, InvalidBson> {
        let len = self.length(at, end)?;
        let data = Self::fixed(at + 4, 1, end)?;
        let after = Self::fixed(data, len, end)?;
        if self.bytes[at + 4] == 0x02 {
            let inner = if len >= 4 {
                usize::try_from(self.i32_at(data, after)?).ok()
            } else {
                None
            };
            if inner.is_none() || inner != len.checked_sub(4) {
                return Err(fail(at, Problem::OldBinary));
            }
        }
        Ok(after)
    }

    /// `i32 total | string code | document scope`: the scope is opened like any document, and
    /// must end exactly where `total` says.
    fn code_with_scope(&mut self, at: usize, end: usize) -> Result<usize, InvalidBson> {
        let total = self.length(at, end)?;
        // 4 (total) + 5 (an empty string) + 5 (an empty scope)
        if total < 14 {
            return Err(fail(at, Problem::CodeWithScope));
        }
        let whole = at + total;
        let scope = self.string(at + 4, whole)?;
        let scope_len = self.length(scope, whole)?;
        if scope + scope_len != whole {
            return Err(fail(at, Problem::CodeWithScope));
        }
        self.open_document(scope, whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::spec::BinarySubtype;
    use bson::{Binary, JavaScriptCodeWithScope, Regex, Timestamp, doc, oid::ObjectId, rawdoc};

    fn check(bytes: &[u8]) -> Result<(), InvalidBson> {
        let doc = RawDocument::from_bytes(bytes).expect("outer framing is valid");
        document(doc, MAX_REQUEST_DEPTH)
    }

    /// `{a: {a: ... {} ...}}` with `levels` documents in all, built in one pass.
    fn nested(levels: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(levels * 8);
        for _ in 1..levels {
            out.extend_from_slice(&[0, 0, 0, 0, 0x03, b'a', 0]);
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        for level in (0..levels - 1).rev() {
            out.push(0);
            let start = level * 7;
            let len = u32::try_from(out.len() - start).unwrap();
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        }
        out
    }

    #[test]
    fn every_element_type_a_driver_sends_is_valid() {
        let all = doc! {
            "double": 1.5, "string": "héllo", "doc": { "a": [1, 2, { "b": null }] },
            "bin": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] },
            "old": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![7; 3] },
            "oid": ObjectId::from_bytes([3; 12]), "bool": true, "date": bson::DateTime::from_millis(5),
            "null": null, "regex": Regex { pattern: "^a".try_into().unwrap(), options: "i".try_into().unwrap() },
            "code": bson::Bson::JavaScriptCode("f()".into()),
            "cws": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! { "x": { "y": 1 } } },
            "int": 1, "ts": Timestamp { time: 1, increment: 2 }, "long": 2_i64,
            "dec": bson::Decimal128::from_bytes([0; 16]), "min": bson::Bson::MinKey, "max": bson::Bson::MaxKey,
            "sym": bson::Bson::Symbol("s".into()), "undef": bson::Bson::Undefined,
        };
        let raw = bson::RawDocumentBuf::try_from(&all).unwrap();
        assert_eq!(document(&raw, MAX_REQUEST_DEPTH), Ok(()));
        assert_eq!(check(&[5, 0, 0, 0, 0]), Ok(()));
    }

    #[test]
    fn a_corrupt_nested_string_is_found() {
        let raw = rawdoc! { "ping": 1, "$db": "admin", "x": { "s": "abcd" } };
        let mut bytes = raw.as_bytes().to_vec();
        // The nested string's length: claims past the nested document.
        let at = bytes.windows(5).position(|w| w == b"abcd\0").unwrap() - 4;
        bytes[at] = 0x40;
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Length);
        // Not UTF-8.
        let mut bytes = raw.as_bytes().to_vec();
        let s = bytes.windows(5).position(|w| w == b"abcd\0").unwrap();
        bytes[s] = 0xC3;
        bytes[s + 1] = 0x28;
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Utf8);
        // No NUL where the length says.
        let mut bytes = raw.as_bytes().to_vec();
        bytes[s + 4] = b'e';
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::String);
    }

    #[test]
    fn nesting_stops_at_the_cap_without_recursing() {
        assert_eq!(check(&nested(MAX_REQUEST_DEPTH)), Ok(()));
        assert_eq!(
            check(&nested(MAX_REQUEST_DEPTH + 1)).unwrap_err().problem,
            Problem::TooDeep(MAX_REQUEST_DEPTH)
        );
        // Deep enough to overflow any recursive walk: refused, not a crash.
        assert_eq!(
            check(&nested(100_000)).unwrap_err().problem,
            Problem::TooDeep(MAX_REQUEST_DEPTH)
        );
    }

    #[test]
    fn lengths_inside_must_fit_their_container() {
        // {a: {}} whose inner document claims 6 bytes: it would swallow the outer NUL.
        let bytes = [13u8, 0, 0, 0, 0x03, b'a', 0, 6, 0, 0, 0, 0, 0];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Length);
        // A negative string length.
        let bytes = [
            14u8, 0, 0, 0, 0x02, b's', 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0,
        ];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Length);
        // An int32 cut by the document's end.
        let bytes = [10u8, 0, 0, 0, 0x10, b'i', 0, 1, 2, 0];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Length);
        // A key without a NUL before the terminator.
        let bytes = [7u8, 0, 0, 0, 0x0A, b'k', 0];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::CString);
    }

    #[test]
    fn types_booleans_and_binary_lengths_are_checked() {
        let bytes = [9u8, 0, 0, 0, 0x42, b'x', 0, 0, 0];
        assert_eq!(
            check(&bytes).unwrap_err().problem,
            Problem::ElementType(0x42)
        );
        let bytes = [9u8, 0, 0, 0, 0x08, b'b', 0, 2, 0];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Boolean(2));
        // Old binary of 5 bytes whose inner length says 3 (it should say 1).
        let bytes = [
            18u8, 0, 0, 0, 0x05, b'b', 0, 5, 0, 0, 0, 2, 3, 0, 0, 0, 9, 0,
        ];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::OldBinary);
        // Old binary too short for its inner length.
        let bytes = [15u8, 0, 0, 0, 0x05, b'b', 0, 2, 0, 0, 0, 2, 1, 1, 0];
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::OldBinary);
    }

    #[test]
    fn code_with_scope_is_descended_and_its_length_checked() {
        let cws =
            doc! { "c": JavaScriptCodeWithScope { code: "f".into(), scope: doc! { "s": "ok" } } };
        let raw = bson::RawDocumentBuf::try_from(&cws).unwrap();
        let mut bytes = raw.as_bytes().to_vec();
        // Corrupt the string inside the scope: still found.
        let s = bytes.windows(3).position(|w| w == b"ok\0").unwrap();
        bytes[s] = 0xFF;
        assert_eq!(check(&bytes).unwrap_err().problem, Problem::Utf8);
        // A total that disagrees with code + scope.
        let mut bytes = raw.as_bytes().to_vec();
        let total_at = 4 + 1 + 2;
        bytes[total_at] += 1;
        assert!(check(&bytes).is_err());
    }

    #[test]
    fn the_top_level_document_counts_as_one_level() {
        let doc = RawDocument::from_bytes(&[5, 0, 0, 0, 0]).unwrap();
        assert_eq!(document(doc, 1), Ok(()));
        assert_eq!(document(doc, 0).unwrap_err().problem, Problem::TooDeep(0));
    }
}
