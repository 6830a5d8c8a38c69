//! Sorted runs of the embedded item table: immutable, sorted, checksummed files of entries
//! `(key, put value or tombstone)`, written once in one sequential pass and then only read, by
//! many threads at once (positional reads, no lock, still readable after the path is unlinked).
//!
//! | part | layout |
//! |------|--------|
//! | file | `header` · data blocks · `index block` · `filter block` · `trailer` |
//! | header | magic `46 4c 52 55 4e 00 00 02` (`FLRUN` then `00 00 02`, format 2) |
//! | block (data, index and filter) | `payload length (u32 LE)` · `crc32 of payload (u32 LE)` · payload |
//! | data payload | records in strictly increasing key order; a block is closed once it holds ≥ 16 KiB |
//! | record | `shared (varint)`: bytes the key shares with the block's previous key (0 for a block's first) · `rest length (varint)` · the key's other bytes · `kind (u8)`: 0 tombstone, 1 put · for a put: `value length (varint)` · value |
//! | index payload | `block count (u32 LE)` · per data block: `offset (u64 LE)` · `length with its 8-byte header (u32 LE)` · `first key length (varint)` · first key · `last key length (varint)` · last key |
//! | filter payload | `hash count k (u8)` · `block count b (u64 LE)` · `b` blocks of 64 bytes, each eight 64-bit words (LE) |
//! | trailer (40 bytes) | `index offset (u64 LE)` · `filter offset (u64 LE)` · `entry count (u64 LE)` · `tombstone count (u64 LE)` · magic `FLRUNEND` |
//!
//! Data blocks are contiguous from offset 8; the index block follows the last one, the filter
//! block follows the index. Varints are LEB128 (7 bits a byte, low bits first), as in
//! `item_codec.rs`.
//!
//! The Bloom filter holds every key, hashed as `xxh3_128(00 ++ key)`, and every partition
//! header (a key's first `2 + pk length` bytes, see `item_codec.rs`; a key too short for its
//! pk length is its own header), hashed as `xxh3_128(01 ++ header)`. It is blocked: with `h1`
//! the hash's low and `h2` its high 64 bits, an item lives in block `(h2 · b) >> 64` (a 512-bit
//! block, one cache line), where probe `i < k` sets bit `(h1 >> 9i) & 511` (bit `j` is bit
//! `j % 64` of word `j / 64`). `k = 7`; a run written from a batch has
//! `b = max(1, ⌈12 · items / 512⌉)`, items being the keys plus the distinct partition headers of
//! the run (about 1% false positives, and one cache line read per lookup), and a merged run has
//! as many blocks as the runs it merges together (it holds no more items than they do).
//!
//! Opening checks both magics, the trailer's offsets and the index and filter crcs, and keeps
//! the index and filter in memory; a data block's crc is checked each time it is read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::mem;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use fhirlake_ports::{StorageError, StorageResult};
use xxhash_rust::xxh3::xxh3_128;

use crate::entry_batch::EntryBatch;
use crate::item_codec::{put_varint, read_varint};

/// One entry of a run: a key and its value, `None` for a tombstone.
pub(crate) type Entry = (Vec<u8>, Option<Vec<u8>>);

/// The first 8 bytes of every run file.
const MAGIC: &[u8; 8] = b"FLRUN\x00\x00\x02";
/// The last 8 bytes of every run file.
const END_MAGIC: &[u8; 8] = b"FLRUNEND";
/// Bytes of the fixed trailer at the end of the file.
const TRAILER_BYTES: usize = 40;
/// Bytes of a block's header: payload length and crc32.
const FRAME_BYTES: usize = 8;
/// A data block is closed once its payload reaches this size.
const BLOCK_TARGET_BYTES: usize = 16 * 1024;
/// Capacity of the write buffer.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Record kind of a tombstone.
const KIND_TOMBSTONE: u8 = 0;
/// Record kind of a put.
const KIND_PUT: u8 = 1;
/// Bloom filter bits per item.
const FILTER_BITS_PER_ITEM: u64 = 12;
/// Bits of one Bloom filter block (a cache line).
const FILTER_BLOCK_BITS: u64 = 512;
/// 64-bit words of one Bloom filter block.
const FILTER_BLOCK_WORDS: usize = 8;
/// Bloom filter probes per item.
const FILTER_HASHES: u8 = 7;
/// Most probes per item: 9 bits each of a 64-bit hash half.
const MAX_FILTER_HASHES: u8 = 7;
/// Domain byte of a full key's Bloom hash.
const DOMAIN_KEY: u8 = 0;
/// Domain byte of a partition header's Bloom hash.
const DOMAIN_PARTITION: u8 = 1;
/// Bloom hashes a writer collects before inserting them together.
const PENDING_HASHES: usize = 4096;
/// Keys up to this length are hashed from a stack buffer.
const INLINE_HASH_BYTES: usize = 256;

/// The error of every integrity check.
fn corrupted() -> StorageError {
    StorageError::internal("corrupted run file in the embedded store")
}

/// An io error, by kind only (paths and contents stay out of messages).
fn io_error(what: &str, error: &io::Error) -> StorageError {
    StorageError::internal(format!("{what}: {}", error.kind()))
}

/// A size that does not fit the format's length fields.
fn too_large() -> StorageError {
    StorageError::internal("a run block is too large for the embedded store")
}

/// Appends `bytes` with their varint length.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The length of the longest common prefix of `a` and `b`, compared eight bytes at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
        let (mut xa, mut yb) = ([0u8; 8], [0u8; 8]);
        xa.copy_from_slice(x);
        yb.copy_from_slice(y);
        let differ = u64::from_le_bytes(xa) ^ u64::from_le_bytes(yb);
        if differ != 0 {
            return i + (differ.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n].iter().zip(&b[i..n]).take_while(|(x, y)| x == y).count()
}

/// Whether `key` sorts strictly after `previous`, given the length of their common prefix.
fn follows(previous: &[u8], key: &[u8], shared: usize) -> bool {
    match (previous.get(shared), key.get(shared)) {
        (Some(p), Some(k)) => k > p,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// The partition header of a stored key: its first `2 + pk length` bytes, or the whole key when
/// it is too short for them.
pub(crate) fn partition_of(key: &[u8]) -> &[u8] {
    match key {
        [high, low, ..] => {
            let end = 2 + usize::from(u16::from_be_bytes([*high, *low]));
            key.get(..end).unwrap_or(key)
        }
        _ => key,
    }
}

/// The Bloom filter hash of a full key or of a partition header: the same in every run, so
/// worked out once per lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyHash(u128);

impl KeyHash {
    /// The hash of `key`.
    pub(crate) fn of(key: &[u8]) -> KeyHash {
        KeyHash(bloom_hash(DOMAIN_KEY, key))
    }

    /// The hash of a partition header (as `item_codec::partition_header` returns it).
    pub(crate) fn of_partition(header: &[u8]) -> KeyHash {
        KeyHash(bloom_hash(DOMAIN_PARTITION, header))
    }
}

/// The Bloom hash of `bytes` in `domain`: `xxh3_128(domain ++ bytes)`.
fn bloom_hash(domain: u8, bytes: &[u8]) -> u128 {
    let mut inline = [0u8; INLINE_HASH_BYTES + 1];
    if let Some(tail) = inline.get_mut(1..=bytes.len()) {
        tail.copy_from_slice(bytes);
        inline[0] = domain;
        return xxh3_128(&inline[..=bytes.len()]);
    }
    let mut joined = Vec::with_capacity(bytes.len() + 1);
    joined.push(domain);
    joined.extend_from_slice(bytes);
    xxh3_128(&joined)
}

/// Whether `key` is at or after the lower bound.
fn above_lower(key: &[u8], lower: &Bound<Vec<u8>>) -> bool {
    match lower {
        Bound::Included(bound) => key >= bound.as_slice(),
        Bound::Excluded(bound) => key > bound.as_slice(),
        Bound::Unbounded => true,
    }
}

/// Whether `key` is at or before the upper bound.
fn below_upper(key: &[u8], upper: &Bound<Vec<u8>>) -> bool {
    match upper {
        Bound::Included(bound) => key <= bound.as_slice(),
        Bound::Excluded(bound) => key < bound.as_slice(),
        Bound::Unbounded => true,
    }
}

/// Reads exactly `buf.len()` bytes at `offset` without moving a shared cursor.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Reads exactly `buf.len()` bytes at `offset` (positional reads on Windows).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(read) => {
                let rest = buf;
                buf = &mut rest[read..];
                offset += read as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Reads the bytes `[start, end)` of `file`.
fn read_region(file: &File, start: u64, end: u64) -> StorageResult<Vec<u8>> {
    let len = end.checked_sub(start).and_then(|len| usize::try_from(len).ok()).ok_or_else(corrupted)?;
    let mut buf = vec![0u8; len];
    read_exact_at(file, &mut buf, start).map_err(|e| io_error("cannot read a run file", &e))?;
    Ok(buf)
}

/// The payload of a framed block, after checking its length and crc.
fn unframe(framed: &[u8]) -> StorageResult<&[u8]> {
    let mut reader = Reader::new(framed, 0);
    let len = reader.u32()?;
    let crc = reader.u32()?;
    let payload = framed.get(FRAME_BYTES..).ok_or_else(corrupted)?;
    if usize::try_from(len).ok() != Some(payload.len()) || crc32fast::hash(payload) != crc {
        return Err(corrupted());
    }
    Ok(payload)
}

/// A byte range of a decoded block's buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// First byte.
    start: u32,
    /// One past the last byte.
    end: u32,
}

/// Reads untrusted bytes: malformed input is an error, never a panic.
struct Reader<'a> {
    /// All the bytes.
    bytes: &'a [u8],
    /// Where the next read starts.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` starting at `pos`.
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        Reader { bytes, pos }
    }

    /// Whether every byte was read.
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize) -> StorageResult<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or_else(corrupted)?;
        let taken = self.bytes.get(self.pos..end).ok_or_else(corrupted)?;
        self.pos = end;
        Ok(taken)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> StorageResult<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| corrupted())
    }

    /// The next byte.
    fn byte(&mut self) -> StorageResult<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    /// The next little-endian u32.
    fn u32(&mut self) -> StorageResult<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// The next little-endian u64.
    fn u64(&mut self) -> StorageResult<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// The next LEB128 varint.
    fn varint(&mut self) -> StorageResult<u64> {
        let (value, len) = self.bytes.get(self.pos..).and_then(read_varint).ok_or_else(corrupted)?;
        self.pos += len;
        Ok(value)
    }

    /// The next varint-length-prefixed bytes.
    fn prefixed(&mut self) -> StorageResult<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| corrupted())?;
        self.take(len)
    }

    /// Where the next varint-length-prefixed bytes lie.
    fn prefixed_span(&mut self) -> StorageResult<Span> {
        let len = usize::try_from(self.varint()?).map_err(|_| corrupted())?;
        let start = u32::try_from(self.pos).map_err(|_| corrupted())?;
        self.take(len)?;
        let end = u32::try_from(self.pos).map_err(|_| corrupted())?;
        Ok(Span { start, end })
    }
}

/// Where one record of a decoded block lies.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// The key's bytes, in the block's rebuilt keys.
    key: Span,
    /// The value's bytes, in the stored block; `None` for a tombstone.
    value: Option<Span>,
}

/// A data block read from disk and checked, with its keys rebuilt and the position of each of
/// its records.
struct Block {
    /// The whole block as stored (header and payload).
    bytes: Vec<u8>,
    /// Every key of the block in full, one after the other.
    keys: Vec<u8>,
    /// Its records, ascending by key; key spans lie within `keys`, value spans within `bytes`.
    records: Vec<Record>,
}

impl Block {
    /// Checks a stored block (crc, record syntax) and locates its records.
    fn decode(bytes: Vec<u8>) -> StorageResult<Block> {
        unframe(&bytes)?;
        let (keys, records) = Self::parse_records(&bytes)?;
        Ok(Block { bytes, keys, records })
    }

    /// The keys and records of a framed block whose crc was checked. Each key is stored as the
    /// length of the prefix it shares with the key before it and the rest.
    fn parse_records(bytes: &[u8]) -> StorageResult<(Vec<u8>, Vec<Record>)> {
        let mut reader = Reader::new(bytes, FRAME_BYTES);
        let mut records: Vec<Record> = Vec::with_capacity(bytes.len() / 32);
        let mut keys: Vec<u8> = Vec::with_capacity(bytes.len() * 3);
        let mut previous = Span { start: 0, end: 0 };
        // The crc vouches for the bytes, and the writer for the order of their keys, so
        // reading does not compare every key with the one before (a block is read whole for
        // each lookup and merge).
        while !reader.at_end() {
            let shared = usize::try_from(reader.varint()?).map_err(|_| corrupted())?;
            let suffix = reader.prefixed()?;
            if shared > (previous.end - previous.start) as usize {
                return Err(corrupted());
            }
            let start = keys.len();
            keys.extend_from_within(previous.start as usize..previous.start as usize + shared);
            keys.extend_from_slice(suffix);
            let key =
                Span { start: u32::try_from(start).map_err(|_| corrupted())?, end: u32::try_from(keys.len()).map_err(|_| corrupted())? };
            let value = match reader.byte()? {
                KIND_TOMBSTONE => None,
                KIND_PUT => Some(reader.prefixed_span()?),
                _ => return Err(corrupted()),
            };
            records.push(Record { key, value });
            previous = key;
        }
        if records.is_empty() {
            return Err(corrupted());
        }
        Ok((keys, records))
    }

    /// Number of records.
    fn len(&self) -> usize {
        self.records.len()
    }

    /// The bytes of `span` (checked by `decode`).
    fn slice(&self, span: Span) -> &[u8] {
        self.bytes.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    /// The key of record `i`, empty when out of range.
    fn key(&self, i: usize) -> &[u8] {
        self.records.get(i).map(|record| self.key_of(record)).unwrap_or_default()
    }

    /// The key of `record` (checked by `decode`).
    fn key_of(&self, record: &Record) -> &[u8] {
        self.keys.get(record.key.start as usize..record.key.end as usize).unwrap_or_default()
    }

    /// The value of record `i`, `None` for a tombstone.
    fn value(&self, i: usize) -> Option<Vec<u8>> {
        let record = self.records.get(i)?;
        record.value.map(|span| self.slice(span).to_vec())
    }

    /// Record `i` as an owned entry.
    fn entry(&self, i: usize) -> Entry {
        (self.key(i).to_vec(), self.value(i))
    }

    /// The position of `key`, or where it would be inserted.
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.records.binary_search_by(|record| self.key_of(record).cmp(key))
    }

    /// The number of leading records whose key satisfies `pred` (which must be true then false).
    fn partition_point(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        self.records.partition_point(|record| pred(self.key_of(record)))
    }
}

/// What the in-memory index knows about one data block.
#[derive(Debug, Clone)]
struct BlockMeta {
    /// Where the block starts in the file.
    offset: u64,
    /// Its length, header included.
    length: u32,
    /// The key of its first record.
    first_key: Vec<u8>,
    /// The key of its last record.
    last_key: Vec<u8>,
}

/// Encodes the index payload.
fn encode_index(blocks: &[BlockMeta]) -> StorageResult<Vec<u8>> {
    let keys: usize = blocks.iter().map(|block| block.first_key.len() + block.last_key.len() + 32).sum();
    let mut out = Vec::with_capacity(4 + keys);
    out.extend_from_slice(&u32::try_from(blocks.len()).map_err(|_| too_large())?.to_le_bytes());
    for block in blocks {
        out.extend_from_slice(&block.offset.to_le_bytes());
        out.extend_from_slice(&block.length.to_le_bytes());
        put_bytes(&mut out, &block.first_key);
        put_bytes(&mut out, &block.last_key);
    }
    Ok(out)
}

/// Decodes and checks the index payload: blocks contiguous from the header to `data_end`,
/// keys strictly increasing across blocks.
fn decode_index(payload: &[u8], data_end: u64) -> StorageResult<Vec<BlockMeta>> {
    let mut reader = Reader::new(payload, 0);
    let count = usize::try_from(reader.u32()?).map_err(|_| corrupted())?;
    let mut blocks: Vec<BlockMeta> = Vec::with_capacity(count.min(payload.len() / 14));
    let mut expected_offset = MAGIC.len() as u64;
    for _ in 0..count {
        let block = BlockMeta {
            offset: reader.u64()?,
            length: reader.u32()?,
            first_key: reader.prefixed()?.to_vec(),
            last_key: reader.prefixed()?.to_vec(),
        };
        let ordered = block.first_key <= block.last_key && blocks.last().is_none_or(|previous| previous.last_key < block.first_key);
        if !ordered || block.offset != expected_offset || (block.length as usize) <= FRAME_BYTES {
            return Err(corrupted());
        }
        expected_offset += u64::from(block.length);
        blocks.push(block);
    }
    if !reader.at_end() || expected_offset != data_end {
        return Err(corrupted());
    }
    Ok(blocks)
}

/// A blocked Bloom filter over keys and partition headers: every item sets its `k` bits in one
/// 512-bit block (one cache line), so a lookup touches one line of memory.
#[derive(Debug)]
struct Bloom {
    /// Probes per item (k), at most [`MAX_FILTER_HASHES`].
    hashes: u8,
    /// The blocks, each 8 little-endian 64-bit words.
    blocks: Vec<[u64; FILTER_BLOCK_WORDS]>,
}

impl Bloom {
    /// The number of blocks for about 12 bits per item (at least one).
    fn blocks_for(items: usize) -> usize {
        (items as u64).saturating_mul(FILTER_BITS_PER_ITEM).div_ceil(FILTER_BLOCK_BITS).max(1).try_into().unwrap_or(usize::MAX)
    }

    /// An empty filter of `blocks` blocks (at least one).
    fn empty(blocks: usize) -> Bloom {
        Bloom { hashes: FILTER_HASHES, blocks: vec![[0u64; FILTER_BLOCK_WORDS]; blocks.max(1)] }
    }

    /// Decodes and checks a filter payload.
    fn decode(payload: &[u8]) -> StorageResult<Bloom> {
        let mut reader = Reader::new(payload, 0);
        let hashes = reader.byte()?;
        let count = reader.u64()?;
        let bytes = payload.get(reader.pos..).ok_or_else(corrupted)?;
        if hashes == 0 || hashes > MAX_FILTER_HASHES || count == 0 || bytes.len() as u64 != count.saturating_mul(FILTER_BLOCK_BITS / 8) {
            return Err(corrupted());
        }
        let blocks = bytes
            .chunks_exact(FILTER_BLOCK_WORDS * 8)
            .map(|block| {
                let mut words = [0u64; FILTER_BLOCK_WORDS];
                for (word, bytes) in words.iter_mut().zip(block.chunks_exact(8)) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(bytes);
                    *word = u64::from_le_bytes(le);
                }
                words
            })
            .collect();
        Ok(Bloom { hashes, blocks })
    }

    /// The payload's fixed part: k and the block count.
    fn header(&self) -> [u8; 9] {
        let mut header = [0u8; 9];
        header[0] = self.hashes;
        header[1..].copy_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        header
    }

    /// The blocks' bytes, little-endian words in order.
    fn body(&self) -> Vec<u8> {
        self.blocks.iter().flat_map(|block| block.iter().flat_map(|word| word.to_le_bytes())).collect()
    }

    /// The block of `hash` and the bit masks of its probes, word by word.
    fn locate(&self, hash: u128) -> (usize, [u64; FILTER_BLOCK_WORDS]) {
        // The high 64 bits choose the block (multiply-shift, no division), the low 63 bits give
        // the k positions within it, 9 bits each.
        let block = ((u128::from((hash >> 64) as u64) * self.blocks.len() as u128) >> 64) as usize;
        let mut masks = [0u64; FILTER_BLOCK_WORDS];
        let mut bits = hash as u64;
        for _ in 0..self.hashes {
            let position = (bits & 511) as usize;
            masks[position / 64] |= 1 << (position % 64);
            bits >>= 9;
        }
        (block, masks)
    }

    /// Sets the bits of `hash`.
    fn insert(&mut self, hash: u128) {
        let (block, masks) = self.locate(hash);
        if let Some(words) = self.blocks.get_mut(block) {
            for (word, mask) in words.iter_mut().zip(masks) {
                *word |= mask;
            }
        }
    }

    /// Whether every bit of `hash` is set.
    fn contains(&self, hash: u128) -> bool {
        let (block, masks) = self.locate(hash);
        self.blocks.get(block).is_some_and(|words| words.iter().zip(masks).all(|(word, mask)| word & mask == mask))
    }
}

/// The fixed trailer at the end of a run file.
#[derive(Debug, Clone, Copy)]
struct Trailer {
    /// Where the index block starts.
    index_offset: u64,
    /// Where the filter block starts.
    filter_offset: u64,
    /// Number of entries.
    entries: u64,
    /// Number of tombstones among them.
    tombstones: u64,
}

impl Trailer {
    /// The trailer's bytes.
    fn encode(&self) -> [u8; TRAILER_BYTES] {
        let mut out = [0u8; TRAILER_BYTES];
        let fields = [self.index_offset, self.filter_offset, self.entries, self.tombstones];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out[32..].copy_from_slice(END_MAGIC);
        out
    }

    /// Reads and checks the header magic and the trailer of a file of `file_bytes` bytes.
    fn read(file: &File, file_bytes: u64) -> StorageResult<Trailer> {
        let trailer_start = file_bytes.checked_sub(TRAILER_BYTES as u64).ok_or_else(corrupted)?;
        if trailer_start < MAGIC.len() as u64 || read_region(file, 0, MAGIC.len() as u64)? != MAGIC {
            return Err(corrupted());
        }
        let bytes = read_region(file, trailer_start, file_bytes)?;
        let mut reader = Reader::new(&bytes, 0);
        let trailer =
            Trailer { index_offset: reader.u64()?, filter_offset: reader.u64()?, entries: reader.u64()?, tombstones: reader.u64()? };
        let in_order = MAGIC.len() as u64 <= trailer.index_offset
            && trailer.index_offset <= trailer.filter_offset
            && trailer.filter_offset <= trailer_start;
        // Every record takes at least 2 bytes: a cheap bound on the (unchecksummed) counts.
        let plausible =
            trailer.tombstones <= trailer.entries && trailer.entries <= trailer.index_offset.saturating_sub(MAGIC.len() as u64) / 2;
        if reader.take(END_MAGIC.len())? != END_MAGIC || !in_order || !plausible {
            return Err(corrupted());
        }
        Ok(trailer)
    }
}

/// Creates a new owner-only file for reading and writing; fails when it exists.
fn create_file(path: &Path) -> StorageResult<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| io_error("cannot create a run file", &e))
}

/// Makes the directory entry of `path` durable.
#[cfg(unix)]
fn sync_parent(path: &Path) -> StorageResult<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(|e| io_error("cannot sync the run directory", &e))
}

/// Directory entries need no sync here.
#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> StorageResult<()> {
    Ok(())
}

/// Writes one run file in a single buffered pass.
struct RunWriter {
    /// The file, behind a large buffer.
    out: BufWriter<File>,
    /// Bytes written so far.
    offset: u64,
    /// The payload of the open data block.
    block: Vec<u8>,
    /// The first key of the open data block.
    first_key: Vec<u8>,
    /// The last key written (empty before the first).
    last_key: Vec<u8>,
    /// The closed data blocks.
    blocks: Vec<BlockMeta>,
    /// The Bloom filter, sized up front, that every key and distinct partition header goes into.
    filter: Bloom,
    /// Hashes not yet in the filter: inserted [`PENDING_HASHES`] at a time, so the cache misses
    /// of their random blocks overlap instead of stalling each `add`.
    pending: Vec<u128>,
    /// Entries written.
    entries: u64,
    /// Tombstones among them.
    tombstones: u64,
}

impl RunWriter {
    /// A writer of `file` whose filter has `filter_blocks` blocks; writes the header.
    fn new(file: File, filter_blocks: usize) -> StorageResult<RunWriter> {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        out.write_all(MAGIC).map_err(|e| io_error("cannot write a run file", &e))?;
        Ok(RunWriter {
            out,
            offset: MAGIC.len() as u64,
            block: Vec::with_capacity(BLOCK_TARGET_BYTES + 1024),
            first_key: Vec::new(),
            last_key: Vec::new(),
            blocks: Vec::new(),
            filter: Bloom::empty(filter_blocks),
            pending: Vec::with_capacity(PENDING_HASHES),
            entries: 0,
            tombstones: 0,
        })
    }

    /// Appends one entry, whose key must be greater than the previous one.
    fn add(&mut self, key: &[u8], value: Option<&[u8]>) -> StorageResult<()> {
        let shared = shared_prefix(&self.last_key, key);
        if self.entries > 0 && !follows(&self.last_key, key, shared) {
            return Err(StorageError::internal("run entries must have strictly increasing keys"));
        }
        // A key starts a partition unless it shares its whole header with the key before it
        // (the header begins with its own length, so equal bytes mean an equal header).
        if self.entries == 0 || shared < partition_of(key).len() {
            self.pending.push(bloom_hash(DOMAIN_PARTITION, partition_of(key)));
        }
        self.pending.push(bloom_hash(DOMAIN_KEY, key));
        if self.pending.len() >= PENDING_HASHES {
            self.flush_hashes();
        }
        let shared = if self.block.is_empty() {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
            0
        } else {
            shared
        };
        put_varint(&mut self.block, shared as u64);
        put_bytes(&mut self.block, &key[shared..]);
        match value {
            Some(value) => {
                self.block.push(KIND_PUT);
                put_bytes(&mut self.block, value);
            }
            None => {
                self.block.push(KIND_TOMBSTONE);
                self.tombstones += 1;
            }
        }
        self.entries += 1;
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        if self.block.len() >= BLOCK_TARGET_BYTES {
            self.close_block()?;
        }
        Ok(())
    }

    /// Inserts the pending hashes into the filter.
    fn flush_hashes(&mut self) {
        for &hash in &self.pending {
            self.filter.insert(hash);
        }
        self.pending.clear();
    }

    /// Writes a block of `parts` (concatenated) with its header; returns its whole length.
    fn write_framed(&mut self, parts: &[&[u8]]) -> StorageResult<u32> {
        let payload_len: usize = parts.iter().map(|part| part.len()).sum();
        let length = u32::try_from(payload_len + FRAME_BYTES).map_err(|_| too_large())?;
        let mut crc = crc32fast::Hasher::new();
        parts.iter().for_each(|part| crc.update(part));
        let mut header = [0u8; FRAME_BYTES];
        header[..4].copy_from_slice(&(length - FRAME_BYTES as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc.finalize().to_le_bytes());
        let written = self.out.write_all(&header).and_then(|()| parts.iter().try_for_each(|part| self.out.write_all(part)));
        written.map_err(|e| io_error("cannot write a run file", &e))?;
        self.offset += u64::from(length);
        Ok(length)
    }

    /// Writes the open data block, if any, and indexes it.
    fn close_block(&mut self) -> StorageResult<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = mem::take(&mut self.block);
        let offset = self.offset;
        let length = self.write_framed(&[&block])?;
        self.block = block;
        self.block.clear();
        let last_key = self.last_key.clone();
        self.blocks.push(BlockMeta { offset, length, first_key: mem::take(&mut self.first_key), last_key });
        Ok(())
    }

    /// Writes the index, filter and trailer, syncs the file and returns the run.
    fn finish(mut self) -> StorageResult<SortedRun> {
        self.close_block()?;
        let index_offset = self.offset;
        let index = encode_index(&self.blocks)?;
        self.write_framed(&[&index])?;
        let filter_offset = self.offset;
        self.flush_hashes();
        let (header, body) = (self.filter.header(), self.filter.body());
        self.write_framed(&[&header, &body])?;
        let trailer = Trailer { index_offset, filter_offset, entries: self.entries, tombstones: self.tombstones };
        self.out.write_all(&trailer.encode()).map_err(|e| io_error("cannot write a run file", &e))?;
        let file = self.out.into_inner().map_err(|e| io_error("cannot write a run file", e.error()))?;
        file.sync_all().map_err(|e| io_error("cannot sync a run file", &e))?;
        let file_bytes = self.offset + TRAILER_BYTES as u64;
        Ok(SortedRun { file, blocks: self.blocks, filter: self.filter, entries: self.entries, tombstones: self.tombstones, file_bytes })
    }
}

/// An immutable sorted run file, open for concurrent reads (share it as `Arc<SortedRun>`).
#[derive(Debug)]
pub(crate) struct SortedRun {
    /// The open file; read with positional reads only.
    file: File,
    /// The index of its data blocks, ascending.
    blocks: Vec<BlockMeta>,
    /// The Bloom filter over keys and partition headers.
    filter: Bloom,
    /// Number of entries.
    entries: u64,
    /// Number of tombstones among them.
    tombstones: u64,
    /// File size in bytes.
    file_bytes: u64,
}

impl SortedRun {
    /// Writes the entries of a sorted batch (strictly increasing keys; checked: an out-of-order
    /// or duplicate key is an Internal error and the partial file is removed) to a NEW file at
    /// `path` (create_new, mode 0o600 on unix), fsyncs it and its parent directory, and returns
    /// it opened. The filter is sized for the keys and the distinct partitions of the batch. Zero
    /// entries is allowed (an empty run).
    pub(crate) fn write_batch(path: &Path, batch: &EntryBatch) -> StorageResult<SortedRun> {
        let partitions = (1..batch.len()).filter(|&i| partition_of(batch.key(i - 1)) != partition_of(batch.key(i))).count() + 1;
        let blocks = Bloom::blocks_for(batch.len() + partitions);
        Self::create(path, blocks, |writer| batch.iter().try_for_each(|(key, value)| writer.add(key, value)))
    }

    /// [`Self::write_batch`] of entries from an iterator, which may fail; the filter is sized
    /// for `expected_entries` keys in as many partitions.
    #[cfg(test)]
    pub(crate) fn write(
        path: &Path,
        expected_entries: usize,
        entries: impl Iterator<Item = StorageResult<Entry>>,
    ) -> StorageResult<SortedRun> {
        Self::create(path, Bloom::blocks_for(expected_entries.saturating_mul(2)), |writer| {
            for entry in entries {
                let (key, value) = entry?;
                writer.add(&key, value.as_deref())?;
            }
            Ok(())
        })
    }

    /// Merges `sources` (highest precedence first: for a key several hold, the first one's
    /// entry is kept) into a NEW run file at `path`, as [`Self::write_batch`] writes one.
    /// Tombstones are dropped when `drop_tombstones` (the merge includes the oldest run).
    ///
    /// Entries go from the sources' blocks to the new file without being copied out one by
    /// one, and the filter gets as many blocks as the sources' filters together: no more items
    /// than they hold go into it.
    pub(crate) fn merge(path: &Path, sources: &[Arc<SortedRun>], drop_tombstones: bool) -> StorageResult<SortedRun> {
        let blocks = sources.iter().map(|run| run.filter.blocks.len()).sum();
        Self::create(path, blocks, |writer| {
            let mut cursors = sources.iter().map(|run| MergeCursor::new(run)).collect::<StorageResult<Vec<_>>>()?;
            let mut same = Vec::with_capacity(cursors.len());
            loop {
                let mut best: Option<usize> = None;
                for (i, cursor) in cursors.iter().enumerate() {
                    let Some(key) = cursor.key() else { continue };
                    if best.and_then(|b| cursors[b].key()).is_none_or(|best_key| key < best_key) {
                        best = Some(i);
                    }
                }
                let Some(best) = best else { return Ok(()) };
                let (key, value) = cursors[best].entry().ok_or_else(corrupted)?;
                same.clear();
                same.extend((best + 1..cursors.len()).filter(|&other| cursors[other].key() == Some(key)));
                if value.is_some() || !drop_tombstones {
                    writer.add(key, value)?;
                }
                for &other in &same {
                    cursors[other].advance()?;
                }
                cursors[best].advance()?;
            }
        })
    }

    /// Creates the file, has `fill` add the entries, finishes and syncs the run; removes the
    /// file if anything fails.
    fn create(path: &Path, filter_blocks: usize, fill: impl FnOnce(&mut RunWriter) -> StorageResult<()>) -> StorageResult<SortedRun> {
        let file = create_file(path)?;
        let written = RunWriter::new(file, filter_blocks)
            .and_then(|mut writer| fill(&mut writer).and_then(|()| writer.finish()))
            .and_then(|run| sync_parent(path).map(|()| run));
        if written.is_err() {
            let _ = fs::remove_file(path);
        }
        written
    }

    /// Opens an existing run file; verifies magic, trailer, index and filter checksums.
    pub(crate) fn open(path: &Path) -> StorageResult<SortedRun> {
        let file = File::open(path).map_err(|e| io_error("cannot open a run file", &e))?;
        let file_bytes = file.metadata().map_err(|e| io_error("cannot read a run file's metadata", &e))?.len();
        let trailer = Trailer::read(&file, file_bytes)?;
        let index = read_region(&file, trailer.index_offset, trailer.filter_offset)?;
        let blocks = decode_index(unframe(&index)?, trailer.index_offset)?;
        let filter = read_region(&file, trailer.filter_offset, file_bytes - TRAILER_BYTES as u64)?;
        let filter = Bloom::decode(unframe(&filter)?)?;
        if blocks.is_empty() != (trailer.entries == 0) || (blocks.len() as u64) > trailer.entries {
            return Err(corrupted());
        }
        Ok(SortedRun { file, blocks, filter, entries: trailer.entries, tombstones: trailer.tombstones, file_bytes })
    }

    /// Number of entries (puts and tombstones).
    pub(crate) fn len(&self) -> u64 {
        self.entries
    }

    /// File size in bytes.
    pub(crate) fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Number of tombstones.
    pub(crate) fn tombstones(&self) -> u64 {
        self.tombstones
    }

    /// Bloom filter over full keys: false means the key is certainly absent.
    #[cfg(test)]
    pub(crate) fn may_contain_key(&self, key: &[u8]) -> bool {
        self.may_contain(KeyHash::of(key))
    }

    /// [`Self::may_contain_key`] or [`Self::may_contain_partition`] with the hash worked out
    /// once for many runs.
    pub(crate) fn may_contain(&self, hash: KeyHash) -> bool {
        self.filter.contains(hash.0)
    }

    /// Bloom filter over partition headers (a key's first `2 + pk length` bytes): false means no
    /// entry of that partition is in the run. `header` is passed exactly as
    /// `item_codec::partition_header` returns it.
    #[cfg(test)]
    pub(crate) fn may_contain_partition(&self, header: &[u8]) -> bool {
        self.may_contain(KeyHash::of_partition(header))
    }

    /// The entry for `key`: None when the run has no entry for it, Some(None) a tombstone,
    /// Some(Some(value)) a put. Uses the key filter first, then one block read.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> StorageResult<Option<Option<Vec<u8>>>> {
        self.get_hashed(key, KeyHash::of(key))
    }

    /// [`Self::get`] with the key's hash worked out once for many runs.
    pub(crate) fn get_hashed(&self, key: &[u8], hash: KeyHash) -> StorageResult<Option<Option<Vec<u8>>>> {
        if !self.may_contain(hash) {
            return Ok(None);
        }
        let i = self.blocks.partition_point(|block| block.last_key.as_slice() < key);
        match self.blocks.get(i) {
            Some(meta) if meta.first_key.as_slice() <= key => {
                let block = self.read_block(i)?;
                Ok(block.search(key).ok().map(|pos| block.value(pos)))
            }
            _ => Ok(None),
        }
    }

    /// The entries with keys within (lower, upper), ascending when `forward`, else descending.
    /// Reads one block at a time (lazily; a caller that stops early reads no further blocks).
    pub(crate) fn range(self: &Arc<Self>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, forward: bool) -> RunCursor {
        let next_block = if forward {
            Some(self.blocks.partition_point(|block| !above_lower(&block.last_key, &lower))).filter(|&i| i < self.blocks.len())
        } else {
            self.blocks.partition_point(|block| below_upper(&block.first_key, &upper)).checked_sub(1)
        };
        RunCursor { run: Arc::clone(self), lower, upper, forward, next_block, block: None, pos: 0, done: false }
    }

    /// Reads data block `i` and checks it against its crc and the index.
    fn read_block(&self, i: usize) -> StorageResult<Block> {
        let meta = self.blocks.get(i).ok_or_else(corrupted)?;
        let bytes = read_region(&self.file, meta.offset, meta.offset + u64::from(meta.length))?;
        let block = Block::decode(bytes)?;
        if block.key(0) != meta.first_key.as_slice() || block.key(block.len().saturating_sub(1)) != meta.last_key.as_slice() {
            return Err(corrupted());
        }
        Ok(block)
    }
}

/// Iterator over a key range of one run.
pub(crate) struct RunCursor {
    /// The run read.
    run: Arc<SortedRun>,
    /// The range's lower bound.
    lower: Bound<Vec<u8>>,
    /// The range's upper bound.
    upper: Bound<Vec<u8>>,
    /// Ascending when true.
    forward: bool,
    /// The block to read once the current one is exhausted.
    next_block: Option<usize>,
    /// The current block.
    block: Option<Block>,
    /// Forward: the next record's position; backward: one past it.
    pos: usize,
    /// Set once the range is exhausted or an error was returned.
    done: bool,
}

impl RunCursor {
    /// The next entry of the current block, if it has one within the range; ends the cursor at
    /// the range's far bound.
    fn next_in_block(&mut self) -> Option<Entry> {
        let block = self.block.as_ref()?;
        let i = if self.forward { Some(self.pos).filter(|&pos| pos < block.len()) } else { self.pos.checked_sub(1) };
        let Some(i) = i else {
            self.block = None;
            return None;
        };
        let key = block.key(i);
        let in_range = if self.forward { below_upper(key, &self.upper) } else { above_lower(key, &self.lower) };
        if !in_range {
            self.done = true;
            return None;
        }
        self.pos = if self.forward { i + 1 } else { i };
        Some(block.entry(i))
    }

    /// Reads the next block, positioned at the range's near bound; ends the cursor when no block
    /// remains or the next one lies beyond the range.
    fn load_next_block(&mut self) -> StorageResult<()> {
        let Some(i) = self.next_block else {
            self.done = true;
            return Ok(());
        };
        let meta = self.run.blocks.get(i).ok_or_else(corrupted)?;
        let reachable = if self.forward { below_upper(&meta.first_key, &self.upper) } else { above_lower(&meta.last_key, &self.lower) };
        if !reachable {
            self.done = true;
            return Ok(());
        }
        let block = self.run.read_block(i)?;
        if self.forward {
            self.pos = block.partition_point(|key| !above_lower(key, &self.lower));
            self.next_block = Some(i + 1).filter(|&next| next < self.run.blocks.len());
        } else {
            self.pos = block.partition_point(|key| below_upper(key, &self.upper));
            self.next_block = i.checked_sub(1);
        }
        self.block = Some(block);
        Ok(())
    }
}

impl Iterator for RunCursor {
    type Item = StorageResult<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(entry) = self.next_in_block() {
                return Some(Ok(entry));
            }
            if self.done || self.block.is_some() {
                continue;
            }
            if let Err(error) = self.load_next_block() {
                self.done = true;
                self.block = None;
                return Some(Err(error));
            }
        }
        None
    }
}

/// A run read from start to end, one block at a time, for a merge: its current entry is
/// borrowed from the block in memory.
struct MergeCursor<'a> {
    /// The run read.
    run: &'a SortedRun,
    /// The current block; `None` once the run is exhausted.
    block: Option<Block>,
    /// The current record of the block.
    pos: usize,
    /// The block after it.
    next_block: usize,
}

impl<'a> MergeCursor<'a> {
    /// A cursor at the run's first entry.
    fn new(run: &'a SortedRun) -> StorageResult<Self> {
        let mut cursor = MergeCursor { run, block: None, pos: 0, next_block: 0 };
        cursor.load_next_block()?;
        Ok(cursor)
    }

    /// The current entry's key; `None` at the end.
    fn key(&self) -> Option<&[u8]> {
        let block = self.block.as_ref()?;
        block.records.get(self.pos).map(|record| block.key_of(record))
    }

    /// The current entry: its key and value (`None` for a tombstone).
    fn entry(&self) -> Option<(&[u8], Option<&[u8]>)> {
        let block = self.block.as_ref()?;
        let record = block.records.get(self.pos)?;
        Some((block.key_of(record), record.value.map(|span| block.slice(span))))
    }

    /// Moves to the next entry, reading the next block when this one is done.
    fn advance(&mut self) -> StorageResult<()> {
        self.pos += 1;
        if self.block.as_ref().is_some_and(|block| self.pos >= block.len()) {
            self.load_next_block()?;
        }
        Ok(())
    }

    /// Reads the next block (or ends the cursor when there is none).
    fn load_next_block(&mut self) -> StorageResult<()> {
        self.pos = 0;
        self.block = None;
        if self.next_block < self.run.blocks.len() {
            self.block = Some(self.run.read_block(self.next_block)?);
            self.next_block += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_codec::{encode_key, partition_header};
    use fhirlake_ports::StorageErrorKind;
    use std::collections::BTreeMap;
    use std::ops::RangeBounds;

    /// Entries per partition in test runs.
    const PER_PARTITION: usize = 7;

    fn pk(i: usize) -> String {
        format!("pk{:06}", i / PER_PARTITION)
    }

    /// A 40-byte key, increasing with `i`.
    fn key(i: usize) -> Vec<u8> {
        encode_key(&pk(i), &format!("sk{:028}", i * 2))
    }

    /// Every fifth entry is a tombstone.
    fn entries(n: usize) -> Vec<Entry> {
        (0..n).map(|i| (key(i), (i % 5 != 3).then(|| format!("value {i}").into_bytes()))).collect()
    }

    fn write(path: &Path, entries: &[Entry]) -> StorageResult<SortedRun> {
        SortedRun::write(path, entries.len(), entries.iter().cloned().map(Ok))
    }

    fn written(dir: &Path, n: usize) -> (Arc<SortedRun>, Vec<Entry>) {
        let entries = entries(n);
        let run = write(&dir.join("run"), &entries).expect("write");
        (Arc::new(run), entries)
    }

    fn collect(run: &Arc<SortedRun>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, forward: bool) -> Vec<Entry> {
        run.range(lower, upper, forward).collect::<StorageResult<Vec<_>>>().expect("range")
    }

    fn expected(entries: &[Entry], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>, forward: bool) -> Vec<Entry> {
        let bounds = (lower.as_ref(), upper.as_ref());
        let mut out: Vec<Entry> = entries.iter().filter(|(key, _)| RangeBounds::<Vec<u8>>::contains(&bounds, key)).cloned().collect();
        if !forward {
            out.reverse();
        }
        out
    }

    fn assert_reads_back(run: &Arc<SortedRun>, entries: &[Entry]) {
        assert_eq!(run.len(), entries.len() as u64);
        for (key, value) in entries {
            assert_eq!(run.get(key).expect("get"), Some(value.clone()));
        }
        assert_eq!(collect(run, Bound::Unbounded, Bound::Unbounded, true), entries);
        let mut reversed = entries.to_vec();
        reversed.reverse();
        assert_eq!(collect(run, Bound::Unbounded, Bound::Unbounded, false), reversed);
    }

    #[test]
    fn written_runs_read_back_before_and_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (run, entries) = written(dir.path(), 20_000);
        assert!(run.blocks.len() > 20, "{} blocks", run.blocks.len());
        assert!((run.tombstones() > 0) && run.len() > 0);
        assert_reads_back(&run, &entries);
        let file_bytes = run.file_bytes();
        drop(run);
        let reopened = Arc::new(SortedRun::open(&dir.path().join("run")).expect("open"));
        assert_eq!(reopened.file_bytes(), file_bytes);
        assert_eq!(fs::metadata(dir.path().join("run")).expect("metadata").len(), file_bytes);
        assert!((reopened.tombstones() > 0));
        assert_reads_back(&reopened, &entries);
        assert_eq!(reopened.get(&key(3)).expect("get"), Some(None));
    }

    #[test]
    fn blocks_are_about_sixteen_kib_and_a_large_record_gets_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (run, _) = written(dir.path(), 20_000);
        let full = &run.blocks[..run.blocks.len() - 1];
        assert!(full.iter().all(|b| (BLOCK_TARGET_BYTES..BLOCK_TARGET_BYTES + 100).contains(&(b.length as usize - FRAME_BYTES))));
        let big = vec![(b"a".to_vec(), Some(vec![7u8; 100_000])), (b"b".to_vec(), Some(vec![8u8; 10]))];
        let run = Arc::new(write(&dir.path().join("big"), &big).expect("write"));
        assert_eq!(run.blocks.len(), 2);
        assert_reads_back(&run, &big);
    }

    /// Bounds around interesting positions: absent ends, first and last keys, block edges,
    /// keys between stored ones.
    fn probes(run: &SortedRun, n: usize) -> Vec<Vec<u8>> {
        let mut probes = vec![Vec::new(), vec![0xff; 4], key(0), key(n - 1), key(1), key(n / 2)];
        let mut between = key(n / 3);
        between.push(0);
        probes.push(between);
        for block in run.blocks.iter().take(3) {
            probes.push(block.first_key.clone());
            probes.push(block.last_key.clone());
            let mut after_last = block.last_key.clone();
            after_last.push(0);
            probes.push(after_last);
        }
        probes
    }

    fn bounds(probes: &[Vec<u8>]) -> Vec<Bound<Vec<u8>>> {
        let mut bounds = vec![Bound::Unbounded];
        for probe in probes {
            bounds.push(Bound::Included(probe.clone()));
            bounds.push(Bound::Excluded(probe.clone()));
        }
        bounds
    }

    #[test]
    fn every_bound_combination_matches_a_filter_of_all_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 6_000;
        let (run, entries) = written(dir.path(), n);
        assert!(run.blocks.len() >= 3, "{} blocks", run.blocks.len());
        let bounds = bounds(&probes(&run, n));
        for lower in &bounds {
            for upper in &bounds {
                for forward in [true, false] {
                    let got = collect(&run, lower.clone(), upper.clone(), forward);
                    assert_eq!(got, expected(&entries, lower, upper, forward), "{lower:?} {upper:?} {forward}");
                }
            }
        }
    }

    #[test]
    fn ranges_inside_a_block_across_many_blocks_and_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 20_000;
        let (run, entries) = written(dir.path(), n);
        let between = |i: usize| {
            let mut k = key(i);
            k.push(b'~');
            k
        };
        let cases = [
            (Bound::Included(key(10)), Bound::Excluded(key(20))),
            (Bound::Excluded(between(100)), Bound::Included(between(15_000))),
            (Bound::Included(between(5)), Bound::Unbounded),
            (Bound::Unbounded, Bound::Excluded(key(19_999))),
            (Bound::Included(key(500)), Bound::Included(key(500))),
            (Bound::Excluded(key(500)), Bound::Excluded(key(501))),
            (Bound::Included(key(900)), Bound::Included(key(100))),
            (Bound::Included(between(7)), Bound::Excluded(key(8))),
            (Bound::Excluded(key(n - 1)), Bound::Unbounded),
            (Bound::Unbounded, Bound::Excluded(key(0))),
        ];
        for (lower, upper) in cases {
            for forward in [true, false] {
                let got = collect(&run, lower.clone(), upper.clone(), forward);
                assert_eq!(got, expected(&entries, &lower, &upper, forward), "{lower:?} {upper:?} {forward}");
            }
        }
        let mut cursor = run.range(Bound::Unbounded, Bound::Included(key(1_000)), false);
        assert_eq!(cursor.next().map(|e| e.map(|(k, _)| k)), Some(Ok(key(1_000))));
        assert_eq!(cursor.next().map(|e| e.map(|(k, _)| k)), Some(Ok(key(999))));
    }

    #[test]
    fn absent_keys_are_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3_000;
        let (run, _) = written(dir.path(), n);
        let mut absent = vec![Vec::new(), vec![0], vec![0xff; 3], encode_key(&pk(0), ""), encode_key(&pk(n), "sk")];
        for i in [0, 1, 700, n / 2, n - 1] {
            let mut between = key(i);
            between.push(0);
            absent.push(between);
            absent.push(encode_key(&pk(i), &format!("sk{:028}", i * 2 + 1)));
        }
        for key in absent {
            assert_eq!(run.get(&key).expect("get"), None, "{key:?}");
        }
    }

    #[test]
    fn partition_filter_has_every_written_partition_and_few_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 10_000;
        let (run, entries) = written(dir.path(), n);
        for i in 0..n {
            assert!(run.may_contain_partition(&partition_header(&pk(i))));
        }
        assert!(entries.iter().all(|(key, _)| run.may_contain_key(key)));
        let false_positives = (0..1_000).filter(|j| run.may_contain_partition(&partition_header(&format!("absent{j}")))).count();
        assert!(false_positives < 50, "{false_positives} false positives");
        let key_false_positives = (0..1_000).filter(|j| run.may_contain_key(&encode_key(&pk(0), &format!("x{j}")))).count();
        assert!(key_false_positives < 50, "{key_false_positives} false positives");
    }

    #[test]
    fn a_key_too_short_for_its_pk_length_is_its_own_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let malformed = vec![(vec![0], None), (vec![0, 200, 1], Some(b"x".to_vec())), (vec![1], Some(Vec::new()))];
        let run = Arc::new(write(&dir.path().join("run"), &malformed).expect("write"));
        assert!(malformed.iter().all(|(key, _)| run.may_contain_partition(key)));
        assert_eq!(partition_of(&[0, 1, 7, 8]), &[0, 1, 7]);
        assert_reads_back(&run, &malformed);
    }

    #[test]
    fn out_of_order_duplicate_and_failing_input_leave_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        let bad: [Vec<Entry>; 2] = [vec![(key(2), None), (key(1), None)], vec![(key(1), None), (key(1), Some(vec![]))]];
        for entries in bad {
            let error = write(&path, &entries).map(|_| ()).expect_err("refused");
            assert_eq!(error.kind, StorageErrorKind::Internal);
            assert!(!path.exists());
        }
        let mut many: Vec<StorageResult<Entry>> = entries(5_000).into_iter().map(Ok).collect();
        many.push(Err(StorageError::internal("source failed")));
        let error = SortedRun::write(&path, 10, many.into_iter()).map(|_| ()).expect_err("refused");
        assert_eq!(error.message, "source failed");
        assert!(!path.exists());
    }

    #[test]
    fn an_existing_file_is_neither_overwritten_nor_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        fs::write(&path, b"keep").expect("write");
        assert!(write(&path, &entries(3)).is_err());
        assert_eq!(fs::read(&path).expect("read"), b"keep");
    }

    #[test]
    fn an_empty_run_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        let run = Arc::new(write(&path, &[]).expect("write"));
        for run in [run, Arc::new(SortedRun::open(&path).expect("open"))] {
            assert!(run.len() == 0 && run.tombstones() == 0);
            assert_eq!(run.get(b"x").expect("get"), None);
            assert!(!run.may_contain_partition(&partition_header("p")));
            assert_eq!(collect(&run, Bound::Unbounded, Bound::Unbounded, true), vec![]);
            assert_eq!(collect(&run, Bound::Unbounded, Bound::Unbounded, false), vec![]);
        }
    }

    fn flip_byte(path: &Path, offset: usize) {
        let mut bytes = fs::read(path).expect("read");
        bytes[offset] ^= 0x20;
        fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_corrupted_data_block_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        let entries = entries(5_000);
        drop(write(&path, &entries).expect("write"));
        flip_byte(&path, FRAME_BYTES + 100);
        let run = Arc::new(SortedRun::open(&path).expect("data blocks are checked when read"));
        let error = run.get(&key(0)).expect_err("corrupted");
        assert_eq!(error, corrupted());
        let mut forward = run.range(Bound::Unbounded, Bound::Unbounded, true);
        assert_eq!(forward.next().map(|e| e.map(|_| ())), Some(Err(corrupted())));
        assert!(forward.next().is_none());
        let backward = collect_until_error(&run);
        assert_eq!(backward.last(), Some(&Err(corrupted())));
        assert!(backward.iter().rev().skip(1).all(Result::is_ok));
        assert_eq!(run.get(&key(4_999)).expect("other blocks are intact"), Some(entries[4_999].1.clone()));
    }

    #[test]
    fn cursors_read_no_block_beyond_what_they_return() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        let entries = entries(5_000);
        let run = write(&path, &entries).expect("write");
        let (first, last) = (run.blocks[0].clone(), run.blocks[run.blocks.len() - 1].clone());
        drop(run);
        flip_byte(&path, last.offset as usize + FRAME_BYTES + 10);
        let run = Arc::new(SortedRun::open(&path).expect("open"));
        let head: Vec<_> = run.range(Bound::Unbounded, Bound::Unbounded, true).take(10).collect();
        assert!(head.iter().all(Result::is_ok));
        let in_first = collect(&run, Bound::Unbounded, Bound::Included(first.last_key.clone()), true);
        assert_eq!(in_first.len(), run.read_block(0).expect("first block").len());
        let mut past_last = last.last_key.clone();
        past_last.push(0);
        assert_eq!(collect(&run, Bound::Included(past_last), Bound::Unbounded, false), vec![]);
        assert!(run.range(Bound::Unbounded, Bound::Unbounded, false).next().is_some_and(|e| e.is_err()));
    }

    fn collect_until_error(run: &Arc<SortedRun>) -> Vec<StorageResult<Entry>> {
        run.range(Bound::Unbounded, Bound::Unbounded, false).collect()
    }

    #[test]
    fn corrupted_or_truncated_metadata_fails_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run");
        let run = write(&path, &entries(2_000)).expect("write");
        let (index_offset, len) = (run.blocks.last().map(|b| b.offset + u64::from(b.length)).expect("blocks"), run.file_bytes());
        drop(run);
        let original = fs::read(&path).expect("read");
        let damaged = dir.path().join("damaged");
        let mut variants = vec![original[..len as usize - 1].to_vec(), original[..10].to_vec(), Vec::new()];
        let trailer = len as usize - TRAILER_BYTES;
        for offset in [0, index_offset as usize + 12, trailer - 5, trailer, trailer + 15, trailer + 20, len as usize - 1] {
            let mut bytes = original.clone();
            bytes[offset] ^= 1;
            variants.push(bytes);
        }
        for bytes in variants {
            fs::write(&damaged, &bytes).expect("write");
            assert!(SortedRun::open(&damaged).is_err(), "{} bytes", bytes.len());
        }
    }

    #[test]
    fn a_run_is_shared_across_threads_and_survives_unlinking() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SortedRun>();
        let dir = tempfile::tempdir().expect("tempdir");
        let (run, entries) = written(dir.path(), 4_000);
        fs::remove_file(dir.path().join("run")).expect("unlink");
        let entries = Arc::new(entries);
        let readers: Vec<_> = (0..4)
            .map(|t| {
                let (run, entries) = (Arc::clone(&run), Arc::clone(&entries));
                std::thread::spawn(move || entries.iter().skip(t).step_by(4).all(|(k, v)| run.get(k) == Ok(Some(v.clone()))))
            })
            .collect();
        assert!(readers.into_iter().all(|reader| reader.join().expect("join")));
    }

    #[cfg(unix)]
    #[test]
    fn run_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = written(dir.path(), 10);
        let mode = fs::metadata(dir.path().join("run")).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_model_of_puts_and_tombstones_matches_a_btree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).to_be_bytes().to_vec(), (i % 3 != 0).then(|| vec![i as u8; (i % 40) as usize])))
            .collect();
        let entries: Vec<Entry> = model.into_iter().collect();
        let run = Arc::new(write(&dir.path().join("run"), &entries).expect("write"));
        assert_reads_back(&run, &entries);
    }

    #[test]
    fn shared_prefixes_and_order_agree_with_byte_comparison() {
        let words: Vec<Vec<u8>> = (0..60u32)
            .map(|i| {
                let mut word = vec![b'k'; (i % 23) as usize];
                word.extend((0..i % 5).map(|j| (i * 7 + j) as u8));
                word
            })
            .collect();
        for a in &words {
            for b in &words {
                let naive = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                let shared = shared_prefix(a, b);
                assert_eq!(shared, naive, "{a:?} {b:?}");
                assert_eq!(follows(a, b, shared), b > a, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_merge_keeps_the_first_sources_entries_and_drops_tombstones_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Three overlapping runs, newest first: source s holds every key i with i % (s + 2) == 0.
        let sources: Vec<Vec<Entry>> = (0..3)
            .map(|s| {
                (0..4_000)
                    .filter(|i| i % (s + 2) == 0)
                    .map(|i| (key(i), (i % 11 != s).then(|| format!("source {s} value {i}").into_bytes())))
                    .collect()
            })
            .collect();
        let runs: Vec<Arc<SortedRun>> = sources
            .iter()
            .enumerate()
            .map(|(s, entries)| Arc::new(write(&dir.path().join(format!("source{s}")), entries).expect("write")))
            .collect();
        let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for entries in sources.iter().rev() {
            model.extend(entries.iter().cloned());
        }
        for drop_tombstones in [false, true] {
            let path = dir.path().join(format!("merged-{drop_tombstones}"));
            let merged = Arc::new(SortedRun::merge(&path, &runs, drop_tombstones).expect("merge"));
            let expected: Vec<Entry> =
                model.iter().filter(|(_, v)| v.is_some() || !drop_tombstones).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_reads_back(&merged, &expected);
            let reopened = Arc::new(SortedRun::open(&path).expect("open"));
            assert_reads_back(&reopened, &expected);
            assert!(expected.iter().all(|(key, _)| merged.may_contain_partition(partition_of(key))));
        }
    }
}
