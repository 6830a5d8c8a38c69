//! The sorted runs of the embedded table: which run files hold items, in what precedence, and
//! how they are merged into fewer, larger runs.
//!
//! A large `batch_write` (a bulk import's index entries) does not go through the B-tree, where
//! each of its entries would dirty a random page: it is written once, sequentially, as an
//! immutable [`SortedRun`] file and registered in the manifest table [`RUNS`] (sequence number →
//! file id) in the same redb transaction that removes the batch's keys from the B-tree. So:
//!
//! - an item in the B-tree (`items`) is newer than any run's entry for its key;
//! - between runs, the higher sequence number is newer;
//! - a B-tree delete of a key some run may hold leaves a shadow (an entry of [`SHADOWS`]) that
//!   hides the runs' entries; a run's own deletes are tombstones.
//!
//! Readers take the redb read transaction and the run list together (see
//! [`crate::redb_item_table`]), so each read sees one consistent state. The compactor merges
//! [`RunPolicy::merge_width`] adjacent runs of one size tier (or, beyond
//! [`RunPolicy::max_runs`] runs, the newest ones) into one run that takes the window's newest
//! sequence number (tombstones are dropped when the window includes the oldest run): size-tiered
//! compaction, so an entry is rewritten about once per tier.
//! Files are `<table>.runs/<file id, 16 hex digits>.run`; a file the manifest does not name (a
//! crash before registration, or after a merge committed) is deleted when the table opens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fhirlake_ports::{StorageError, StorageResult};
use redb::{ReadableTable, TableDefinition};

use crate::sorted_run::{Entry, KeyHash, SortedRun};

/// The manifest: run sequence number → file id.
pub(crate) const RUNS: TableDefinition<u64, u64> = TableDefinition::new("runs");
/// Keys deleted in the B-tree that a run may still hold (values are empty).
pub(crate) const SHADOWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("shadows");

/// When batches become runs, and when runs are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    /// A `batch_write` of at least this many writes becomes a run; smaller ones go to the B-tree.
    pub min_run_entries: usize,
    /// More runs than this are merged even when their sizes differ.
    pub max_runs: usize,
    /// How many adjacent runs of one size tier one merge takes (at least 2); also the factor
    /// between the sizes of neighbouring tiers.
    pub merge_width: usize,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy { min_run_entries: 4096, max_runs: 12, merge_width: 4 }
    }
}

/// One registered run.
#[derive(Debug)]
pub(crate) struct Run {
    /// Its precedence: higher is newer.
    pub seq: u64,
    /// Its file id.
    pub id: u64,
    /// Its contents.
    pub data: Arc<SortedRun>,
}

/// The registered runs, newest first. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Runs(Arc<Vec<Arc<Run>>>);

impl Runs {
    /// The runs, newest first.
    pub fn newest_first(&self) -> &[Arc<Run>] {
        &self.0
    }

    /// Whether there are none (the B-tree alone is then the whole table, and shadows are moot).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any run may hold an entry for `key`.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let hash = KeyHash::of(key);
        self.0.iter().any(|run| run.data.may_contain(hash))
    }

    /// The newest run entry of `key`: `None` when no run has one, `Some(None)` a tombstone.
    pub fn get(&self, key: &[u8]) -> StorageResult<Option<Option<Vec<u8>>>> {
        let hash = KeyHash::of(key);
        for run in self.0.iter() {
            if let Some(found) = run.data.get_hashed(key, hash)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// These runs with `run` added as the newest.
    pub fn with_newest(&self, run: Arc<Run>) -> Runs {
        let mut runs = Vec::with_capacity(self.0.len() + 1);
        runs.push(run);
        runs.extend(self.0.iter().cloned());
        Runs(Arc::new(runs))
    }

    /// These runs with the runs of `replaced` (sequence numbers) swapped for `merged`.
    pub fn with_merged(&self, replaced: &[u64], merged: Arc<Run>) -> Runs {
        let mut runs: Vec<Arc<Run>> = self.0.iter().filter(|r| !replaced.contains(&r.seq)).cloned().collect();
        let at = runs.iter().position(|r| r.seq < merged.seq).unwrap_or(runs.len());
        runs.insert(at, merged);
        Runs(Arc::new(runs))
    }

    /// The adjacent runs the policy merges next (newest first), if any: see [`merge_window`].
    pub fn to_merge(&self, policy: &RunPolicy) -> Option<Vec<Arc<Run>>> {
        let sizes: Vec<u64> = self.0.iter().map(|run| run.data.file_bytes()).collect();
        let at = merge_window(&sizes, policy)?;
        Some(self.0[at..at + policy.merge_width.max(2)].to_vec())
    }

    /// Whether `run` is the oldest registered run.
    pub fn is_oldest(&self, run: &Run) -> bool {
        self.0.last().is_some_and(|oldest| oldest.seq == run.seq)
    }
}

/// Where the next merge starts among runs of these file sizes (newest first), if the policy
/// merges now: the newest [`RunPolicy::merge_width`] adjacent runs of one size tier, or, when
/// there are more than [`RunPolicy::max_runs`], the adjacent window of that many whose largest
/// run is smallest (then the one with fewest bytes). Runs grow by a factor of the width from
/// tier to tier, so an entry is rewritten about once per tier (log of the table's size). A
/// forced merge rewrites its largest run, hence the choice: the newest window, with runs of
/// mixed sizes (an import's large batches and their small remainders), held the run the last
/// forced merge had made, and merging it again and again rewrote entries a number of times that
/// grew with the table.
fn merge_window(sizes: &[u64], policy: &RunPolicy) -> Option<usize> {
    let width = policy.merge_width.max(2);
    if sizes.len() < width {
        return None;
    }
    let tiers: Vec<u32> = sizes.iter().map(|bytes| size_tier(*bytes, width)).collect();
    let same_tier = (0..=sizes.len() - width).find(|&j| tiers[j..j + width].iter().all(|tier| *tier == tiers[j]));
    let cheapest = || {
        (0..=sizes.len() - width).min_by_key(|&j| {
            let window = &sizes[j..j + width];
            (window.iter().max().copied(), window.iter().sum::<u64>())
        })
    };
    same_tier.or_else(|| if sizes.len() > policy.max_runs { cheapest() } else { None })
}

/// Runs below this size are all of tier 0.
const TIER_BASE_BYTES: u64 = 1 << 20;

/// The size tier of a run of `bytes`: how many times `width` fits in its size over
/// [`TIER_BASE_BYTES`], on a logarithmic scale (0 below `width` MiB, 1 below `width²` MiB, ...).
fn size_tier(bytes: u64, width: usize) -> u32 {
    let mut tier = 0;
    let mut bound = TIER_BASE_BYTES.saturating_mul(width as u64);
    while bytes >= bound && bound < u64::MAX {
        tier += 1;
        bound = bound.saturating_mul(width as u64);
    }
    tier
}

/// The directory of a table's run files: `table.redb` → `table.runs`.
pub(crate) fn runs_dir(table_path: &Path) -> PathBuf {
    table_path.with_extension("runs")
}

/// The path of run file `id`.
pub(crate) fn run_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.run"))
}

fn io_error(what: &str, error: &std::io::Error) -> StorageError {
    StorageError::internal(format!("embedded store: cannot {what} the run directory: {}", error.kind()))
}

/// Creates the run directory (mode 0700) if it is missing.
pub(crate) fn create_dir(dir: &Path) -> StorageResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_error("create", &e))
}

/// Opens the runs the manifest names and deletes every other file of the directory. Returns the
/// runs and the next free file id.
pub(crate) fn load(dir: &Path, manifest: &impl ReadableTable<u64, u64>) -> StorageResult<(Runs, u64)> {
    let mut named = BTreeMap::new();
    for entry in manifest.iter().map_err(crate::redb_item_table::store_error)? {
        let (seq, id) = entry.map_err(crate::redb_item_table::store_error)?;
        named.insert(seq.value(), id.value());
    }
    let mut next_id = named.values().max().map_or(1, |id| id + 1);
    let listing = std::fs::read_dir(dir).map_err(|e| io_error("read", &e))?;
    for file in listing {
        let file = file.map_err(|e| io_error("read", &e))?;
        let name = file.file_name();
        let id = name.to_str().and_then(|n| n.strip_suffix(".run")).and_then(|n| u64::from_str_radix(n, 16).ok());
        if let Some(id) = id {
            next_id = next_id.max(id + 1);
        }
        if !id.is_some_and(|id| named.values().any(|named| *named == id)) {
            std::fs::remove_file(file.path()).map_err(|e| io_error("clean", &e))?;
        }
    }
    let mut runs = Vec::with_capacity(named.len());
    for (seq, id) in named.into_iter().rev() {
        runs.push(Arc::new(Run { seq, id, data: Arc::new(SortedRun::open(&run_path(dir, id))?) }));
    }
    Ok((Runs(Arc::new(runs)), next_id))
}

/// Entries of several sources merged in key order (descending when not `forward`): for a key
/// several sources hold, the entry of the first of them wins. Tombstones are kept or dropped.
pub(crate) struct Merged<'a> {
    sources: Vec<Source<'a>>,
    forward: bool,
    keep_tombstones: bool,
}

/// A source of [`Merged`]: its entries, in the merge's order.
pub(crate) type EntryIter<'a> = Box<dyn Iterator<Item = StorageResult<Entry>> + 'a>;

struct Source<'a> {
    entries: EntryIter<'a>,
    head: Option<Entry>,
}

impl<'a> Merged<'a> {
    /// Merges `sources`, highest precedence first.
    pub fn new(sources: Vec<EntryIter<'a>>, forward: bool, keep_tombstones: bool) -> StorageResult<Self> {
        let mut merged = Merged { sources: Vec::with_capacity(sources.len()), forward, keep_tombstones };
        for mut entries in sources {
            let head = entries.next().transpose()?;
            merged.sources.push(Source { entries, head });
        }
        Ok(merged)
    }

    fn before(&self, a: &[u8], b: &[u8]) -> bool {
        if self.forward {
            a < b
        } else {
            a > b
        }
    }

    fn advance(&mut self, source: usize) -> StorageResult<Option<Entry>> {
        let source = &mut self.sources[source];
        let next = source.entries.next().transpose()?;
        Ok(std::mem::replace(&mut source.head, next))
    }

    fn next_entry(&mut self) -> StorageResult<Option<Entry>> {
        loop {
            let mut best: Option<usize> = None;
            for (i, source) in self.sources.iter().enumerate() {
                let Some((key, _)) = &source.head else { continue };
                let better = match best {
                    None => true,
                    Some(b) => self.sources[b].head.as_ref().is_some_and(|(best_key, _)| self.before(key, best_key)),
                };
                if better {
                    best = Some(i);
                }
            }
            let Some(best) = best else { return Ok(None) };
            let Some(entry) = self.advance(best)? else { return Ok(None) };
            for other in best + 1..self.sources.len() {
                if self.sources[other].head.as_ref().is_some_and(|(key, _)| *key == entry.0) {
                    self.advance(other)?;
                }
            }
            if entry.1.is_some() || self.keep_tombstones {
                return Ok(Some(entry));
            }
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = StorageResult<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(entries: &[(&str, Option<&str>)]) -> EntryIter<'static> {
        let owned: Vec<Entry> = entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))).collect();
        Box::new(owned.into_iter().map(Ok))
    }

    fn keys(merged: Merged<'_>) -> Vec<(String, Option<String>)> {
        merged
            .map(|e| {
                let (k, v) = e.expect("an entry");
                (String::from_utf8(k).expect("utf-8"), v.map(|v| String::from_utf8(v).expect("utf-8")))
            })
            .collect()
    }

    /// Bytes written by registering runs of `arrivals` (bytes each, oldest first) and merging
    /// after each as the default policy says, per byte registered; and the runs left.
    fn write_amplification(arrivals: &[u64]) -> (f64, usize) {
        let policy = RunPolicy::default();
        let (mut runs, mut written) = (Vec::new(), 0u64);
        for &bytes in arrivals {
            runs.insert(0, bytes);
            written += bytes;
            while let Some(at) = merge_window(&runs, &policy) {
                let merged: u64 = runs.drain(at..at + policy.merge_width).sum();
                written += merged;
                runs.insert(at, merged);
            }
        }
        (written as f64 / arrivals.iter().sum::<u64>() as f64, runs.len())
    }

    #[test]
    fn merging_rewrites_an_entry_about_once_per_tier_whatever_the_run_sizes() {
        let mib = TIER_BASE_BYTES;
        // 120 runs of one size: tiers of 4, 16 and 64 runs.
        let (uniform, left) = write_amplification(&[20 * mib; 120]);
        assert!(uniform < 4.0 && left <= 12, "{uniform} {left}");
        // An import's batches and their remainders alternate (19 MiB, 1.2 MiB): merging the
        // newest window whenever there are too many runs rewrote each byte 48 times for 300
        // runs; the window with the smallest largest run keeps it near the uniform case.
        let mixed: Vec<u64> = (0..300).map(|i| if i % 2 == 0 { 19 * mib } else { 6 * mib / 5 }).collect();
        let (amplification, left) = write_amplification(&mixed);
        assert!(amplification < 6.0 && left <= 12, "{amplification} {left}");
        let (few, left) = write_amplification(&mixed[..60]);
        assert!(few < 3.0 && left <= 12, "{few} {left}");
    }

    #[test]
    fn size_tiers_grow_by_the_width() {
        let mib = TIER_BASE_BYTES;
        assert_eq!(size_tier(0, 6), 0);
        assert_eq!(size_tier(6 * mib - 1, 6), 0);
        assert_eq!(size_tier(6 * mib, 6), 1);
        assert_eq!(size_tier(36 * mib - 1, 6), 1);
        assert_eq!(size_tier(36 * mib, 6), 2);
        assert_eq!(size_tier(u64::MAX, 2), 43, "2^21 to 2^63: the bound saturates instead of overflowing");
    }

    #[test]
    fn the_first_source_wins_ties_and_tombstones_hide() {
        let newer = source(&[("a", Some("new")), ("c", None), ("e", Some("5"))]);
        let older = source(&[("a", Some("old")), ("b", Some("2")), ("c", Some("3")), ("d", Some("4"))]);
        let merged = Merged::new(vec![newer, older], true, false).expect("merge");
        let expected = [("a", "new"), ("b", "2"), ("d", "4"), ("e", "5")];
        assert_eq!(keys(merged), expected.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect::<Vec<_>>());
    }

    #[test]
    fn tombstones_are_kept_when_asked_and_order_can_descend() {
        let newer = source(&[("c", None), ("a", Some("new"))]);
        let older = source(&[("d", Some("4")), ("c", Some("3")), ("a", Some("old"))]);
        let merged = Merged::new(vec![newer, older], false, true).expect("merge");
        let got = keys(merged);
        assert_eq!(got, vec![("d".into(), Some("4".into())), ("c".into(), None), ("a".into(), Some("new".into()))]);
    }

    #[test]
    fn an_error_of_a_source_is_returned() {
        let failing: EntryIter<'static> =
            Box::new(vec![Ok((b"a".to_vec(), Some(b"1".to_vec()))), Err(StorageError::internal("boom"))].into_iter());
        let mut merged = Merged::new(vec![failing], true, false).expect("merge");
        assert!(merged.next().is_some_and(|e| e.is_err()));
    }
}
