//! OP_COMPRESSED (2012): `i32 originalOpcode | i32 uncompressedSize | u8 compressorId |
//! compressed bytes`, wrapping the bytes after another message's header.
//!
//! Decompression is bounded: the claimed size is checked against the message size limit before
//! anything is allocated, and the output must have exactly the claimed size.

use std::io::{Read, Write};

use bytes::BytesMut;

use crate::WireError;
use crate::frame::Frame;
use crate::header::{HEADER_LEN, Header, OpCode, check_length};
use crate::reader::Reader;

/// A compressor id from the handshake's `compression` negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// 0: the bytes as they are.
    Noop,
    /// 1: snappy (raw block format).
    Snappy,
    /// 2: zlib.
    Zlib,
    /// 3: zstd.
    Zstd,
}

impl Compressor {
    /// The id on the wire.
    pub const fn id(self) -> u8 {
        match self {
            Compressor::Noop => 0,
            Compressor::Snappy => 1,
            Compressor::Zlib => 2,
            Compressor::Zstd => 3,
        }
    }

    /// The compressor for an id.
    ///
    /// # Errors
    /// [`WireError::UnknownCompressor`] for ids other than 0-3.
    pub const fn from_id(id: u8) -> Result<Self, WireError> {
        match id {
            0 => Ok(Compressor::Noop),
            1 => Ok(Compressor::Snappy),
            2 => Ok(Compressor::Zlib),
            3 => Ok(Compressor::Zstd),
            other => Err(WireError::UnknownCompressor(other)),
        }
    }

    /// The name used in the handshake (`"snappy"`, `"zlib"`, `"zstd"`, `"noop"`).
    pub const fn name(self) -> &'static str {
        match self {
            Compressor::Noop => "noop",
            Compressor::Snappy => "snappy",
            Compressor::Zlib => "zlib",
            Compressor::Zstd => "zstd",
        }
    }
}

/// A parsed OP_COMPRESSED, borrowing from its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCompressed<'a> {
    /// The op code of the wrapped message (never OP_COMPRESSED).
    pub original_op_code: OpCode,
    /// Size of the wrapped message without its header.
    pub uncompressed_size: i32,
    /// How the payload is compressed.
    pub compressor: Compressor,
    /// The compressed bytes.
    pub payload: &'a [u8],
}

impl<'a> OpCompressed<'a> {
    /// Parses the bytes after the header.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::InvalidOriginalOpCode`] (unknown or nested),
    /// [`WireError::UnknownCompressor`].
    pub fn parse(body: &'a [u8]) -> Result<OpCompressed<'a>, WireError> {
        let mut reader = Reader::new(body);
        let original = reader.i32("originalOpcode")?;
        let original_op_code = match OpCode::from_i32(original) {
            Ok(OpCode::Compressed) | Err(_) => {
                return Err(WireError::InvalidOriginalOpCode(original));
            }
            Ok(op) => op,
        };
        let uncompressed_size = reader.i32("uncompressedSize")?;
        let compressor = Compressor::from_id(reader.u8("compressorId")?)?;
        Ok(OpCompressed {
            original_op_code,
            uncompressed_size,
            compressor,
            payload: reader.rest(),
        })
    }
}

impl Frame {
    /// Unwraps an OP_COMPRESSED frame into the message it carries, with the same `requestID`
    /// and `responseTo`. Any other frame is returned unchanged.
    ///
    /// # Errors
    /// Any parse error of [`OpCompressed::parse`]; [`WireError::MessageLength`] when the claimed
    /// size exceeds `max_message_size`; [`WireError::Decompress`] when the payload is corrupt or
    /// does not decompress to exactly the claimed size.
    pub fn decompress(self, max_message_size: usize) -> Result<Frame, WireError> {
        if self.op_code() != OpCode::Compressed {
            return Ok(self);
        }
        let compressed = self.op_compressed()?;
        let total = i64::from(compressed.uncompressed_size) + HEADER_LEN as i64;
        let length = i32::try_from(total).map_err(|_| WireError::MessageLength {
            length: total,
            max: max_message_size,
        })?;
        let size = check_length(length, max_message_size)? - HEADER_LEN;
        let header = Header {
            message_length: length,
            request_id: self.request_id(),
            response_to: self.response_to(),
            op_code: compressed.original_op_code,
        };
        let mut out = BytesMut::with_capacity(size + HEADER_LEN);
        out.extend_from_slice(&header.to_bytes());
        let body = decompress_payload(compressed.compressor, compressed.payload, size)?;
        out.extend_from_slice(&body);
        Frame::from_bytes(out, max_message_size)
    }

    /// Wraps this message in OP_COMPRESSED with `compressor`, keeping its ids.
    ///
    /// # Errors
    /// [`WireError::InvalidOriginalOpCode`] for an OP_COMPRESSED frame;
    /// [`WireError::Decompress`] if the compressor fails (it should not);
    /// [`WireError::MessageLength`] if the result is too large.
    pub fn compress(&self, compressor: Compressor) -> Result<Frame, WireError> {
        if self.op_code() == OpCode::Compressed {
            return Err(WireError::InvalidOriginalOpCode(
                OpCode::Compressed.as_i32(),
            ));
        }
        let plain = self.body();
        let payload = compress_payload(compressor, plain)?;
        let mut body = Vec::with_capacity(9 + payload.len());
        body.extend_from_slice(&self.op_code().as_i32().to_le_bytes());
        let size = i32::try_from(plain.len()).unwrap_or(i32::MAX);
        body.extend_from_slice(&size.to_le_bytes());
        body.push(compressor.id());
        body.extend_from_slice(&payload);
        Frame::build(
            self.request_id(),
            self.response_to(),
            OpCode::Compressed,
            &body,
        )
    }
}

fn decompress_payload(
    compressor: Compressor,
    payload: &[u8],
    size: usize,
) -> Result<Vec<u8>, WireError> {
    let wrong_size =
        |got: usize| WireError::Decompress(format!("{got} bytes, header claims {size}"));
    let out = match compressor {
        Compressor::Noop => payload.to_vec(),
        Compressor::Snappy => {
            let claimed = snap::raw::decompress_len(payload)
                .map_err(|e| WireError::Decompress(format!("snappy: {e}")))?;
            if claimed != size {
                return Err(wrong_size(claimed));
            }
            snap::raw::Decoder::new()
                .decompress_vec(payload)
                .map_err(|e| WireError::Decompress(format!("snappy: {e}")))?
        }
        Compressor::Zlib => inflate(payload, size)?,
        Compressor::Zstd => {
            let zstd_error = |e: std::io::Error| WireError::Decompress(format!("zstd: {e}"));
            let mut decoder = zstd::stream::read::Decoder::new(payload).map_err(zstd_error)?;
            decoder
                .window_log_max(zstd_window_log_max(size))
                .map_err(zstd_error)?;
            bounded_read(decoder, size, "zstd")?
        }
    };
    if out.len() != size {
        return Err(wrong_size(out.len()));
    }
    Ok(out)
}

/// The largest zstd window (as a power of two) a frame that decompresses to `size` bytes may ask
/// for. The decoder allocates the window its frame header names, up to 128 MiB by default, so a
/// few bytes of header could otherwise cost that much memory whatever the claimed size. A
/// window never needs to be larger than the content; 4 MiB (2^22) is allowed whatever the size,
/// because encoders that do not know the content size pick windows up to that at their usual
/// levels.
fn zstd_window_log_max(size: usize) -> u32 {
    const MIN: u32 = 22;
    const MAX: u32 = 27;
    let needed = usize::BITS - size.saturating_sub(1).leading_zeros();
    needed.clamp(MIN, MAX)
}

/// Inflates one whole zlib stream of at most `size` bytes. Unlike `flate2::read::ZlibDecoder`,
/// which stops quietly at the end of the stream, this refuses bytes after the stream's end (and
/// a stream that ends early), so a payload is accepted only when all of it is one valid stream.
/// The output grows as it is produced, never past `size + 1` bytes, so a decompression bomb
/// costs no more than the claim.
fn inflate(payload: &[u8], size: usize) -> Result<Vec<u8>, WireError> {
    const CHUNK: usize = 1 << 20;
    let corrupt = |what: &str| WireError::Decompress(format!("zlib: {what}"));
    let mut inflater = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(size.saturating_add(1).min(CHUNK));
    loop {
        if out.len() == out.capacity() {
            if out.len() > size {
                return Err(corrupt("more bytes than the header claims"));
            }
            out.reserve_exact((size + 1 - out.len()).min(CHUNK));
        }
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let input = payload.get(consumed..).unwrap_or_default();
        let before = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(input, &mut out, flate2::FlushDecompress::None)
            .map_err(|e| corrupt(&e.to_string()))?;
        match status {
            flate2::Status::StreamEnd => break,
            flate2::Status::Ok | flate2::Status::BufError => {
                if (inflater.total_in(), out.len()) == before {
                    return Err(corrupt("stream ends early"));
                }
            }
        }
    }
    if usize::try_from(inflater.total_in()).ok() != Some(payload.len()) {
        return Err(corrupt("bytes after the end of the stream"));
    }
    Ok(out)
}

/// Reads at most `size + 1` bytes, so a decompression bomb costs no more than the claim.
fn bounded_read(reader: impl Read, size: usize, name: &str) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(size.min(1 << 20));
    reader
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| WireError::Decompress(format!("{name}: {e}")))?;
    Ok(out)
}

fn compress_payload(compressor: Compressor, plain: &[u8]) -> Result<Vec<u8>, WireError> {
    match compressor {
        Compressor::Noop => Ok(plain.to_vec()),
        Compressor::Snappy => snap::raw::Encoder::new()
            .compress_vec(plain)
            .map_err(|e| WireError::Decompress(format!("snappy: {e}"))),
        Compressor::Zlib => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(plain)
                .and_then(|()| encoder.finish())
                .map_err(|e| WireError::Decompress(format!("zlib: {e}")))
        }
        Compressor::Zstd => zstd::stream::encode_all(plain, 0)
            .map_err(|e| WireError::Decompress(format!("zstd: {e}"))),
    }
}
