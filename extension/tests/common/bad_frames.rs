//! Bytes a misbehaving downstream client sends: the malformed-input tests and the fault suite
//! use the same frames.

/// A message header: `length`, requestID 7, responseTo 0, `op_code`.
pub fn header(length: i32, op_code: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&7i32.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&op_code.to_le_bytes());
    out
}

/// A header claiming a 2 GiB OP_MSG.
pub fn claims_two_gib() -> Vec<u8> {
    header(i32::MAX, 2013)
}

/// A whole frame with an op code the protocol does not have.
pub fn unknown_op_code() -> Vec<u8> {
    let mut out = header(20, 9999);
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// OP_COMPRESSED (noop) claiming an uncompressed size of 2 GiB for 4 bytes.
pub fn compressed_with_bogus_size() -> Vec<u8> {
    let mut out = header(16 + 9 + 4, 2012);
    out.extend_from_slice(&2013i32.to_le_bytes()); // originalOpcode
    out.extend_from_slice(&i32::MAX.to_le_bytes()); // uncompressedSize
    out.push(0); // noop
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}
