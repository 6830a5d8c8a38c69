//! The byte layout of items in the embedded table: keys that sort like DynamoDB's, and a
//! compact attribute encoding.
//!
//! | part  | layout |
//! |-------|--------|
//! | key   | `pk length (u16, big-endian)` · `pk (UTF-8)` · `sk (UTF-8)` |
//! | value | `format (u8) = 1` · `attribute count (varint)` · attributes in name order |
//! | attribute | `name length (varint)` · `name (UTF-8)` · `tag (u8)` · payload |
//!
//! | tag | type | payload |
//! |-----|------|---------|
//! | 1 | `S` | `length (varint)` · UTF-8 bytes |
//! | 2 | `N` | zigzag varint |
//! | 3 | `B` | `length (varint)` · bytes |
//! | 4 / 5 | `Bool` false / true | none |
//!
//! Every key of a partition starts with the same header (length and pk), and no header is a
//! prefix of another partition's header (the length fixes where the pk ends), so a partition
//! is one contiguous key range; within it keys order exactly as their sort keys' bytes.
//! Varints are LEB128 (7 bits a byte, low bits first). Example: `pk = "ds#1"`, `sk = "v#2"`
//! gives the key `00 04 64 73 23 31 76 23 32`; the attribute `version = N(2)` is
//! `07 "version" 02 04`.

use fhirlake_ports::{AttrValue, Attrs, StorageError, StorageResult};

const FORMAT_V1: u8 = 1;
const TAG_S: u8 = 1;
const TAG_N: u8 = 2;
const TAG_B: u8 = 3;
const TAG_FALSE: u8 = 4;
const TAG_TRUE: u8 = 5;

/// The bytes every key of partition `pk` starts with. `pk` must be at most `u16::MAX` bytes
/// (the item table validates the 2048-byte limit first).
pub fn partition_header(pk: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(2 + pk.len());
    let len = u16::try_from(pk.len()).unwrap_or(u16::MAX);
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(pk.as_bytes());
    header
}

/// The stored key of `(pk, sk)`.
pub fn encode_key(pk: &str, sk: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + pk.len() + sk.len());
    encode_key_into(&mut key, pk, sk);
    key
}

/// Appends the stored key of `(pk, sk)` to `out`.
pub(crate) fn encode_key_into(out: &mut Vec<u8>, pk: &str, sk: &str) {
    let len = u16::try_from(pk.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(pk.as_bytes());
    out.extend_from_slice(sk.as_bytes());
}

/// The sort key of a stored key whose partition header is `header_len` bytes long.
pub fn decode_sort_key(key: &[u8], header_len: usize) -> StorageResult<String> {
    let sk = key.get(header_len..).ok_or_else(corrupted)?;
    String::from_utf8(sk.to_vec()).map_err(|_| corrupted())
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// no such string exists (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

fn corrupted() -> StorageError {
    StorageError::internal("corrupted item in the embedded store")
}

/// Appends `value` as a LEB128 varint (the embedded store's one varint writer: items and runs).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Encodes attributes (the value of a stored item).
pub fn encode_attrs(attrs: &Attrs) -> Vec<u8> {
    let mut out = Vec::new();
    encode_attrs_into(&mut out, attrs);
    out
}

/// At least the length of the encoding of `attrs`.
pub(crate) fn encoded_attrs_bound(attrs: &Attrs) -> usize {
    let payload: usize = attrs
        .iter()
        .map(|(name, value)| {
            name.len()
                + 12
                + match value {
                    AttrValue::S(s) => s.len(),
                    AttrValue::B(b) => b.len(),
                    AttrValue::N(_) | AttrValue::Bool(_) => 0,
                }
        })
        .sum();
    11 + payload
}

/// Appends the encoding of `attrs` to `out`.
pub(crate) fn encode_attrs_into(out: &mut Vec<u8>, attrs: &Attrs) {
    out.reserve(encoded_attrs_bound(attrs));
    out.push(FORMAT_V1);
    put_varint(out, attrs.len() as u64);
    for (name, value) in attrs {
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        match value {
            AttrValue::S(s) => {
                out.push(TAG_S);
                put_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            AttrValue::N(n) => {
                out.push(TAG_N);
                put_varint(out, zigzag(*n));
            }
            AttrValue::B(b) => {
                out.push(TAG_B);
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            AttrValue::Bool(false) => out.push(TAG_FALSE),
            AttrValue::Bool(true) => out.push(TAG_TRUE),
        }
    }
}

/// The LEB128 varint at the start of `bytes` and its length in bytes; `None` when it is
/// truncated or longer than 64 bits (the embedded store's one varint reader: items and runs).
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    if let Some(&byte) = bytes.first().filter(|&&byte| byte < 0x80) {
        return Some((u64::from(byte), 1));
    }
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads encoded attributes without trusting them: malformed input is an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> StorageResult<u8> {
        let (first, rest) = self.bytes.split_first().ok_or_else(corrupted)?;
        self.bytes = rest;
        Ok(*first)
    }

    fn varint(&mut self) -> StorageResult<u64> {
        let (value, len) = read_varint(self.bytes).ok_or_else(corrupted)?;
        self.bytes = &self.bytes[len..];
        Ok(value)
    }

    fn slice(&mut self) -> StorageResult<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| corrupted())?;
        if len > self.bytes.len() {
            return Err(corrupted());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn str(&mut self) -> StorageResult<&'a str> {
        std::str::from_utf8(self.slice()?).map_err(|_| corrupted())
    }

    fn header(&mut self) -> StorageResult<u64> {
        if self.byte()? != FORMAT_V1 {
            return Err(corrupted());
        }
        self.varint()
    }

    fn value(&mut self) -> StorageResult<AttrValue> {
        Ok(match self.byte()? {
            TAG_S => AttrValue::S(self.str()?.to_string()),
            TAG_N => AttrValue::N(unzigzag(self.varint()?)),
            TAG_B => AttrValue::B(self.slice()?.to_vec()),
            TAG_FALSE => AttrValue::Bool(false),
            TAG_TRUE => AttrValue::Bool(true),
            _ => return Err(corrupted()),
        })
    }

    fn skip_value(&mut self) -> StorageResult<()> {
        match self.byte()? {
            TAG_S | TAG_B => self.slice().map(|_| ()),
            TAG_N => self.varint().map(|_| ()),
            TAG_FALSE | TAG_TRUE => Ok(()),
            _ => Err(corrupted()),
        }
    }
}

/// Decodes attributes written by [`encode_attrs`].
pub fn decode_attrs(bytes: &[u8]) -> StorageResult<Attrs> {
    let mut reader = Reader { bytes };
    let count = reader.header()?;
    let mut attrs = Attrs::new();
    for _ in 0..count {
        let name = reader.str()?.to_string();
        let value = reader.value()?;
        attrs.insert(name, value);
    }
    if !reader.bytes.is_empty() {
        return Err(corrupted());
    }
    Ok(attrs)
}

/// Reads one attribute of encoded attributes without decoding the others.
pub fn find_attr(bytes: &[u8], wanted: &str) -> StorageResult<Option<AttrValue>> {
    let mut reader = Reader { bytes };
    let count = reader.header()?;
    for _ in 0..count {
        if reader.str()? == wanted {
            return reader.value().map(Some);
        }
        reader.skip_value()?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Attrs {
        let mut attrs = Attrs::new();
        attrs.insert("s".to_string(), AttrValue::S("héllo".into()));
        attrs.insert("empty".to_string(), AttrValue::S(String::new()));
        attrs.insert("min".to_string(), AttrValue::N(i64::MIN));
        attrs.insert("max".to_string(), AttrValue::N(i64::MAX));
        attrs.insert("neg".to_string(), AttrValue::N(-1));
        attrs.insert("b".to_string(), AttrValue::B((0..=255).collect()));
        attrs.insert("b0".to_string(), AttrValue::B(Vec::new()));
        attrs.insert("t".to_string(), AttrValue::Bool(true));
        attrs.insert("f".to_string(), AttrValue::Bool(false));
        attrs
    }

    #[test]
    fn attrs_round_trip() {
        let attrs = sample();
        assert_eq!(decode_attrs(&encode_attrs(&attrs)), Ok(attrs));
        assert_eq!(decode_attrs(&encode_attrs(&Attrs::new())), Ok(Attrs::new()));
    }

    #[test]
    fn find_attr_reads_one_attribute() {
        let encoded = encode_attrs(&sample());
        assert_eq!(find_attr(&encoded, "neg"), Ok(Some(AttrValue::N(-1))));
        assert_eq!(find_attr(&encoded, "t"), Ok(Some(AttrValue::Bool(true))));
        assert_eq!(find_attr(&encoded, "missing"), Ok(None));
    }

    #[test]
    fn small_numbers_are_small() {
        let mut attrs = Attrs::new();
        attrs.insert("version".to_string(), AttrValue::N(2));
        assert_eq!(encode_attrs(&attrs), [&[1u8, 1, 7][..], b"version", &[TAG_N, 4]].concat());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let encoded = encode_attrs(&sample());
        for len in 0..encoded.len() {
            assert!(decode_attrs(&encoded[..len]).is_err(), "truncated to {len}");
        }
        let mut trailing = encoded.clone();
        trailing.push(0);
        assert!(decode_attrs(&trailing).is_err());
        assert!(decode_attrs(&[FORMAT_V1, 1, 1, b'x', 99]).is_err());
        assert!(decode_attrs(&[FORMAT_V1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_attrs(&[2, 0]).is_err());
    }

    #[test]
    fn keys_keep_partitions_apart_and_sort_keys_in_order() {
        let a = partition_header("a");
        assert!(!encode_key("ab", "").starts_with(&a));
        assert!(!encode_key("a#", "x").starts_with(&a));
        assert!(encode_key("a", "1") < encode_key("a", "2"));
        assert!(encode_key("a", "B") < encode_key("a", "a"));
        assert!(encode_key("a", "a") < encode_key("a", "a\u{0}"));
        assert_eq!(encode_key("ds#1", "v#2"), vec![0, 4, b'd', b's', b'#', b'1', b'v', b'#', b'2']);
        assert_eq!(decode_sort_key(&encode_key("p", "é"), a.len()), Ok("é".to_string()));
    }

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
