//! A bounds-checked little-endian cursor over a byte slice: every read either succeeds or
//! says which field ran past the end.

use crate::WireError;
use bson::RawDocument;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated(what));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// A NUL-terminated UTF-8 string, without its terminator.
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let rest = &self.bytes[self.pos..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::InvalidCString(what))?;
        let s = std::str::from_utf8(&rest[..nul]).map_err(|_| WireError::InvalidCString(what))?;
        self.pos += nul + 1;
        Ok(s)
    }

    /// One BSON document whose length prefix must fit in what remains.
    pub(crate) fn document(&mut self, what: &'static str) -> Result<&'a RawDocument, WireError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < 4 {
            return Err(WireError::Truncated(what));
        }
        let len = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = usize::try_from(len).map_err(|_| WireError::Overrun(what))?;
        if len < 5 {
            return Err(WireError::Overrun(what));
        }
        let bytes = self.take(len, what)?;
        RawDocument::from_bytes(bytes).map_err(WireError::bson(what))
    }
}

/// Writes `v` little-endian at `bytes[at..at + 4]`.
pub(crate) fn put_i32(bytes: &mut [u8], at: usize, v: i32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Reads a little-endian i32 at `bytes[at..at + 4]`; the caller guarantees the bounds.
pub(crate) fn get_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_in_order() {
        let bytes = [
            1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0x80, 9,
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.i32("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), u32::MAX);
        assert_eq!(r.i64("c").unwrap(), i64::MIN + 2);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u8("d").unwrap(), 9);
        assert!(r.is_empty());
    }

    #[test]
    fn a_read_past_the_end_names_its_field_and_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(matches!(r.i32("flags"), Err(WireError::Truncated("flags"))));
        assert_eq!(r.remaining(), 3);
        assert!(matches!(r.take(4, "x"), Err(WireError::Truncated("x"))));
        assert_eq!(r.take(3, "x").unwrap(), &[1, 2, 3]);
        assert!(matches!(r.u8("y"), Err(WireError::Truncated("y"))));
        assert!(r.rest().is_empty());
    }

    #[test]
    fn cstr_needs_a_nul_and_utf8() {
        let mut r = Reader::new(b"admin.$cmd\0rest");
        assert_eq!(r.cstr("name").unwrap(), "admin.$cmd");
        assert_eq!(r.rest(), b"rest");
        assert!(matches!(
            Reader::new(b"no nul").cstr("n"),
            Err(WireError::InvalidCString("n"))
        ));
        assert!(matches!(
            Reader::new(&[0xc3, 0x28, 0]).cstr("n"),
            Err(WireError::InvalidCString(_))
        ));
        assert_eq!(Reader::new(&[0]).cstr("n").unwrap(), "");
    }

    #[test]
    fn document_checks_its_length_prefix_against_what_remains() {
        let empty = [5u8, 0, 0, 0, 0];
        let mut r = Reader::new(&empty);
        assert_eq!(r.document("d").unwrap().as_bytes(), &empty);
        assert!(r.is_empty());
        assert!(matches!(
            Reader::new(&[5, 0, 0]).document("d"),
            Err(WireError::Truncated("d"))
        ));
        assert!(matches!(
            Reader::new(&[6, 0, 0, 0, 0]).document("d"),
            Err(WireError::Truncated("d"))
        ));
        assert!(matches!(
            Reader::new(&[4, 0, 0, 0, 0]).document("d"),
            Err(WireError::Overrun("d"))
        ));
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0]).document("d"),
            Err(WireError::Overrun("d"))
        ));
        assert!(matches!(
            Reader::new(&[5, 0, 0, 0, 1]).document("d"),
            Err(WireError::Bson { .. })
        ));
    }

    #[test]
    fn put_and_get_i32_round_trip() {
        let mut bytes = [0u8; 8];
        put_i32(&mut bytes, 2, -123_456);
        assert_eq!(get_i32(&bytes, 2), -123_456);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[6..], &[0, 0]);
    }
}
