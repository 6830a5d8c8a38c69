//! A batch of encoded entries for the embedded table: every key and value in one buffer, and a
//! span per entry, sorted by key.
//!
//! A bulk import hands the table hundreds of thousands of index entries at a time. Encoded one
//! allocation per key and per value, they were scattered over the heap: sorting them chased a
//! pointer per comparison, and allocating and freeing them cost more than encoding. Here they are
//! encoded one after the other into one buffer, and sorting moves 16-byte spans.

use std::collections::HashMap;

use fhirlake_ports::Attrs;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::item_codec::{encode_attrs_into, encode_key_into};
use crate::sorted_run::partition_of;

/// `value_len` of a tombstone.
const TOMBSTONE: u32 = u32::MAX;

/// Where one entry's bytes are: its key at `start`, then its value.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    key_len: u32,
    value_len: u32,
}

/// Encoded entries (`key`, put value or tombstone), in the order pushed until [`Self::sort`].
#[derive(Debug, Default)]
pub(crate) struct EntryBatch {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl EntryBatch {
    /// An empty batch with room for `entries` entries of `bytes` bytes in all.
    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        EntryBatch { bytes: Vec::with_capacity(bytes), spans: Vec::with_capacity(entries) }
    }

    /// Appends a put of the item `(pk, sk)` with `attrs`.
    pub fn put(&mut self, pk: &str, sk: &str, attrs: &Attrs) {
        let start = self.bytes.len();
        encode_key_into(&mut self.bytes, pk, sk);
        let key_end = self.bytes.len();
        encode_attrs_into(&mut self.bytes, attrs);
        self.push_span(start, key_end, Some(self.bytes.len()));
    }

    /// Appends a delete of the item `(pk, sk)`.
    pub fn delete(&mut self, pk: &str, sk: &str) {
        let start = self.bytes.len();
        encode_key_into(&mut self.bytes, pk, sk);
        self.push_span(start, self.bytes.len(), None);
    }

    /// Appends an entry of raw bytes.
    #[cfg(test)]
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        if let Some(value) = value {
            self.bytes.extend_from_slice(value);
        }
        self.push_span(start, key_end, value.map(|_| self.bytes.len()));
    }

    /// Records the entry whose key spans `start..key_end` and whose value ends at `value_end`.
    fn push_span(&mut self, start: usize, key_end: usize, value_end: Option<usize>) {
        // A key is at most a few kilobytes and a value 400 KB (the item limits), so the lengths
        // fit; a value of exactly u32::MAX bytes cannot exist.
        let key_len = (key_end - start) as u32;
        let value_len = value_end.map_or(TOMBSTONE, |end| (end - key_end) as u32);
        self.spans.push(Span { start, key_len, value_len });
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The key of entry `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let span = self.spans[i];
        &self.bytes[span.start..span.start + span.key_len as usize]
    }

    /// The value of entry `i`; `None` for a tombstone.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let span = self.spans[i];
        let start = span.start + span.key_len as usize;
        (span.value_len != TOMBSTONE).then(|| &self.bytes[start..start + span.value_len as usize])
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        (0..self.len()).map(|i| (self.key(i), self.value(i)))
    }

    /// Whether two neighbouring entries have the same key (after [`Self::sort`]: whether any do).
    pub fn has_adjacent_duplicates(&self) -> bool {
        (1..self.len()).any(|i| self.key(i - 1) == self.key(i))
    }

    /// Sorts the entries by key (equal keys in no particular order). The entries of one
    /// partition share its header, often most of their key, so comparing whole keys compared that
    /// header again and again: instead each distinct header is ranked once, and entries are
    /// sorted by a number made of their partition's rank and the next 8 bytes of their key,
    /// comparing the rest of the key only when those are equal.
    pub fn sort(&mut self) {
        let Ok(count) = u32::try_from(self.len()) else {
            let mut spans = std::mem::take(&mut self.spans);
            spans.sort_unstable_by(|a, b| self.span_key(a).cmp(self.span_key(b)));
            self.spans = spans;
            return;
        };
        // Each entry's partition, numbered in order of appearance, then ranked.
        let mut partitions: HashMap<&[u8], u32, Xxh3DefaultBuilder> = HashMap::default();
        let numbered: Vec<u32> = (0..self.len())
            .map(|i| {
                let next = partitions.len() as u32;
                *partitions.entry(partition_of(self.key(i))).or_insert(next)
            })
            .collect();
        let mut headers: Vec<(&[u8], u32)> = partitions.into_iter().collect();
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut rank = vec![0u32; headers.len()];
        for (position, (_, partition)) in headers.iter().enumerate() {
            rank[*partition as usize] = position as u32;
        }
        let mut order: Vec<(u128, u32)> = (0..count)
            .map(|i| {
                let rest = self.rest(i);
                let mut next = [0u8; 8];
                let len = rest.len().min(8);
                next[..len].copy_from_slice(&rest[..len]);
                ((u128::from(rank[numbered[i as usize] as usize]) << 64) | u128::from(u64::from_be_bytes(next)), i)
            })
            .collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| self.rest(a.1).cmp(self.rest(b.1))));
        self.spans = order.iter().map(|&(_, i)| self.spans[i as usize]).collect();
    }

    /// The key of `span`.
    fn span_key(&self, span: &Span) -> &[u8] {
        &self.bytes[span.start..span.start + span.key_len as usize]
    }

    /// The key of entry `i` after its partition header.
    fn rest(&self, i: u32) -> &[u8] {
        let key = self.key(i as usize);
        &key[partition_of(key).len()..]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fhirlake_ports::AttrValue;
    use xxhash_rust::xxh3::xxh3_128;

    use super::*;
    use crate::item_codec::{encode_attrs, encode_key};

    #[test]
    fn entries_read_back_as_encoded() {
        let mut batch = EntryBatch::with_capacity(2, 0);
        let mut attrs = Attrs::new();
        attrs.insert("v".into(), AttrValue::N(3));
        batch.put("pk1", "sk1", &attrs);
        batch.delete("pk2", "");
        assert_eq!(batch.len(), 2);
        assert_eq!((batch.key(0), batch.value(0)), (encode_key("pk1", "sk1").as_slice(), Some(encode_attrs(&attrs).as_slice())));
        assert_eq!((batch.key(1), batch.value(1)), (encode_key("pk2", "").as_slice(), None));
        batch.push(b"k", Some(b""));
        assert_eq!(batch.value(2), Some(&b""[..]), "an empty value is not a tombstone");
    }

    #[test]
    fn sorting_by_partition_rank_is_sorting_by_key() {
        // Partitions of several header lengths, some keys equal to their partition header, a
        // key too short for its header; unique keys in scrambled order.
        let unique: BTreeMap<Vec<u8>, Option<Vec<u8>>> = (0..5_000u64)
            .map(|i| {
                let pk = format!("pk{}", "x".repeat((i % 7) as usize)) + &(i % 37).to_string();
                let sk = if i % 11 == 0 { String::new() } else { format!("{:x}", i * 31) };
                (encode_key(&pk, &sk), (i % 3 != 0).then(|| vec![i as u8; (i % 4) as usize]))
            })
            .chain([(b"\x00".to_vec(), None)])
            .collect();
        let mut scrambled: Vec<(Vec<u8>, Option<Vec<u8>>)> = unique.clone().into_iter().collect();
        scrambled.sort_by_key(|(key, _)| xxh3_128(key));
        let mut batch = EntryBatch::default();
        for (key, value) in &scrambled {
            batch.push(key, value.as_deref());
        }
        batch.sort();
        let sorted: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        assert_eq!(sorted, unique.into_iter().collect::<Vec<_>>());
        assert!(!batch.has_adjacent_duplicates());
        batch.push(b"\x00", None);
        batch.sort();
        assert!(batch.has_adjacent_duplicates());
    }
}
