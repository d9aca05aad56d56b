//! JSON strings: finding the bytes to escape (`"`, `\\`, control characters) sixteen at a time,
//! for the writer (`write_str`) and the reader (`de.rs`), and writing a string literal.
//! `json.rs`'s tests check the output against serde_json at every length and offset.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A flag (the byte's top bit) for each of the eight bytes in `word` that is below 0x20, `"` or
/// `\\`. The lowest flag is always right (a borrow only carries upwards, past a true hit), so
/// `trailing_zeros() / 8` is the offset of the first byte to escape; higher flags may be wrong.
#[inline]
fn escape_flags(word: u64) -> u64 {
    let below_space = word.wrapping_sub(LO * 0x20) & !word;
    let quote = word ^ (LO * u64::from(b'"'));
    let quote = quote.wrapping_sub(LO) & !quote;
    let backslash = word ^ (LO * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(LO) & !backslash;
    (below_space | quote | backslash) & HI
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The escape serde_json writes for `byte`, if it needs one.
#[inline]
fn escape(byte: u8) -> Option<[u8; 6]> {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        0x00..=0x1f => {
            let hi = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0');
            return Some([b'\\', b'u', b'0', b'0', hi, lo]);
        }
        _ => return None,
    };
    Some([b'\\', short, 0, 0, 0, 0])
}

/// The `N` bytes of `bytes` from `at` (zeros when they run past the end): a copy of a fixed
/// size, which compiles to loads and stores rather than a `memory.copy`.
#[inline]
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// The eight bytes of `bytes` from `at`, as a little-endian word (zero past the end).
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes_at(bytes, at))
}

/// The four bytes of `bytes` from `at`, as a little-endian word (zero past the end).
#[inline]
fn word4(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(bytes, at))
}

/// The offset of the first byte at or after `from` that is `"`, `\\` or a control character: what
/// the writer must escape, and what ends the plain run of a string the reader scans.
///
/// In the module (wasm32 with `simd128`) sixteen bytes are one vector compare; elsewhere two
/// eight-byte words (SWAR). Either way one loop check per sixteen bytes (each loop iteration costs
/// a wasm runtime its interruption check), then the last few bytes in one or two words.
#[inline]
pub(crate) fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    match find_escape_blocks(bytes, from) {
        Ok(at) => Some(at),
        Err(from) => find_escape_tail(bytes, from),
    }
}

/// Sixteen bytes at a time, as vectors: `Ok` with the offset found, or `Err` with where the last
/// fewer-than-sixteen bytes start.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn find_escape_blocks(bytes: &[u8], mut from: usize) -> Result<usize, usize> {
    use core::arch::wasm32::{
        i8x16_bitmask, i8x16_eq, u8x16_lt, u8x16_splat, v128_any_true, v128_load, v128_or,
    };
    let quote = u8x16_splat(b'"');
    let backslash = u8x16_splat(b'\\');
    let space = u8x16_splat(0x20);
    while let Some(block) = bytes.get(from..from + 16) {
        // SAFETY: `block` is sixteen readable bytes, and `v128.load` has no alignment requirement.
        let v = unsafe { v128_load(block.as_ptr().cast()) };
        let hits = v128_or(
            v128_or(i8x16_eq(v, quote), i8x16_eq(v, backslash)),
            u8x16_lt(v, space),
        );
        if v128_any_true(hits) {
            return Ok(from + i8x16_bitmask(hits).trailing_zeros() as usize);
        }
        from += 16;
    }
    Err(from)
}

/// Sixteen bytes at a time, as two words: `Ok` with the offset found, or `Err` with where the last
/// fewer-than-sixteen bytes start.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn find_escape_blocks(bytes: &[u8], mut from: usize) -> Result<usize, usize> {
    while from + 16 <= bytes.len() {
        let lo = escape_flags(word(bytes, from));
        let hi = escape_flags(word(bytes, from + 8));
        if lo != 0 {
            return Ok(from + (lo.trailing_zeros() / 8) as usize);
        }
        if hi != 0 {
            return Ok(from + 8 + (hi.trailing_zeros() / 8) as usize);
        }
        from += 16;
    }
    Err(from)
}

/// [`find_escape`] in the last fewer than sixteen bytes from `from`: two words that may overlap,
/// or at most seven bytes one by one.
#[inline]
fn find_escape_tail(bytes: &[u8], from: usize) -> Option<usize> {
    let len = bytes.len();
    if from + 8 <= len {
        let lo = escape_flags(word(bytes, from));
        if lo != 0 {
            return Some(from + (lo.trailing_zeros() / 8) as usize);
        }
        let hi = escape_flags(word(bytes, len - 8));
        return (hi != 0).then(|| len - 8 + (hi.trailing_zeros() / 8) as usize);
    }
    // Not copied into a padded word.
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|at| from + at)
}

/// `s` as a JSON string literal, quotes included.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if bytes.len() <= 16 && write_short(out, bytes) {
        return;
    }
    write_long(out, bytes);
}

/// `"bytes"` for at most sixteen bytes with nothing to escape (most keys and many values), with
/// copies of a fixed size only: a copy of a length known only at run time is a `memory.copy`,
/// which wasmtime runs as a call out of the module, dear for a few bytes. Two words that may
/// overlap are checked and copied, the second over the end of the first. Writes nothing and
/// answers false when a byte needs an escape.
#[inline]
fn write_short(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    /// `A` in every byte: nothing to escape, the padding of a word of fewer bytes.
    const PLAIN: u64 = LO * 0x41;
    let n = bytes.len();
    let start = out.len();
    out.reserve(n + 2);
    if n >= 8 {
        let (head, tail) = (word(bytes, 0), word(bytes, n - 8));
        if escape_flags(head) | escape_flags(tail) != 0 {
            return false;
        }
        out.push(b'"');
        out.extend_from_slice(&head.to_le_bytes());
        out.truncate(start + 1 + n - 8);
        out.extend_from_slice(&tail.to_le_bytes());
    } else if n >= 4 {
        let (head, tail) = (word4(bytes, 0), word4(bytes, n - 4));
        if escape_flags(u64::from(head) | u64::from(tail) << 32) != 0 {
            return false;
        }
        out.push(b'"');
        out.extend_from_slice(&head.to_le_bytes());
        out.truncate(start + 1 + n - 4);
        out.extend_from_slice(&tail.to_le_bytes());
    } else {
        let mut padded = PLAIN.to_le_bytes();
        for (i, slot) in padded.iter_mut().take(3).enumerate() {
            if let Some(&b) = bytes.get(i) {
                *slot = b;
            }
        }
        if escape_flags(u64::from_le_bytes(padded)) != 0 {
            return false;
        }
        out.push(b'"');
        for &b in padded.iter().take(n) {
            out.push(b);
        }
    }
    out.push(b'"');
    true
}

/// [`write_str`] for any string: plain runs copied whole, escapes in between.
fn write_long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[start..]` is not written yet.
    let mut start = 0;
    while let Some(at) = find_escape(bytes, start) {
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        let byte = bytes.get(at).copied().unwrap_or_default();
        if byte == b'"' || byte == b'\\' {
            // The escapes of JSON text inside JSON (a response body in its envelope): no table.
            out.extend_from_slice(&[b'\\', byte]);
        } else if let Some(esc) = escape(byte) {
            let len = if esc[1] == b'u' { 6 } else { 2 };
            out.extend_from_slice(esc.get(..len).unwrap_or_default());
        }
        start = at + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}
