//! The embedded table with sorted runs: the conformance suite with every batch written as a run
//! and runs merged eagerly, and a randomised comparison against an in-memory model through
//! puts, deletes, conditional and transactional writes, batches large and small, merges and
//! reopening.

use std::collections::BTreeMap;
use std::path::Path;

use fhirlake_embedded::{RedbItemTable, RunPolicy};
use fhirlake_ports::{AttrValue, BatchWrite, Condition, Item, ItemTable, Key, Query, SkRange, StorageErrorKind, Write};
use tempfile::TempDir;

/// Every batch becomes a run, and more than two runs are merged two at a time.
const EAGER: RunPolicy = RunPolicy { min_run_entries: 1, max_runs: 2, merge_width: 2 };

async fn eager_table() -> (TempDir, RedbItemTable) {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = RedbItemTable::open_with(dir.path().join("table.redb"), EAGER).expect("open table");
    (dir, table)
}

mod conformance_with_runs {
    fhirlake_ports::item_table_tests!(super::eager_table());
}

/// A deterministic pseudo-random sequence (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PARTITIONS: u64 = 3;
const SORT_KEYS: u64 = 120;

fn key_of(rng: &mut Rng) -> Key {
    Key::new(format!("p{}", rng.below(PARTITIONS)), format!("s{:03}", rng.below(SORT_KEYS)))
}

fn item(key: &Key, n: i64) -> Item {
    Item::new(key.clone()).with("n", AttrValue::N(n))
}

type Model = BTreeMap<Key, i64>;

fn open(path: &Path, policy: RunPolicy) -> RedbItemTable {
    RedbItemTable::open_with(path, policy).expect("open table")
}

/// Every partition read whole, forward and backward in pages of 7, every key read alone, and
/// all at once with `batch_get`: exactly the model.
async fn verify(table: &RedbItemTable, model: &Model, step: usize) {
    for p in 0..PARTITIONS {
        let pk = format!("p{p}");
        let expected: Vec<(String, i64)> = model.iter().filter(|(k, _)| k.pk == pk).map(|(k, n)| (k.sk.clone(), *n)).collect();
        for forward in [true, false] {
            let mut got = Vec::new();
            let mut query = Query::partition(pk.as_str(), 7);
            query.forward = forward;
            loop {
                let page = table.query(&query).await.expect("query");
                got.extend(page.items.iter().map(|i| (i.key.sk.clone(), i.get_i64("n").expect("n"))));
                match page.last_evaluated {
                    Some(last) => query.start_after = Some(last),
                    None => break,
                }
            }
            if !forward {
                got.reverse();
            }
            assert_eq!(got, expected, "partition {pk} (forward: {forward}) after step {step}");
        }
        let range = Query::partition(pk.as_str(), 1000).range(SkRange::Between("s020".into(), "s059".into()));
        let got: Vec<String> = table.query(&range).await.expect("range").items.into_iter().map(|i| i.key.sk).collect();
        let want: Vec<String> = expected.iter().filter(|(sk, _)| ("s020".."s060").contains(&sk.as_str())).map(|(s, _)| s.clone()).collect();
        assert_eq!(got, want, "range of {pk} after step {step}");
    }
    let all: Vec<Key> = (0..PARTITIONS).flat_map(|p| (0..SORT_KEYS).map(move |s| Key::new(format!("p{p}"), format!("s{s:03}")))).collect();
    let mut found: Vec<(Key, i64)> =
        table.batch_get(&all).await.expect("batch get").into_iter().map(|i| (i.key.clone(), i.get_i64("n").expect("n"))).collect();
    found.sort();
    assert_eq!(found, model.iter().map(|(k, n)| (k.clone(), *n)).collect::<Vec<_>>(), "batch_get after step {step}");
    for key in all.iter().step_by(7) {
        let got = table.get(key).await.expect("get").map(|i| i.get_i64("n").expect("n"));
        assert_eq!(got, model.get(key).copied(), "get {key:?} after step {step}");
    }
}

/// One random write, applied to the table and the model; conditional outcomes must agree.
async fn random_write(table: &RedbItemTable, model: &mut Model, rng: &mut Rng, n: i64) {
    match rng.below(8) {
        // A batch: large ones (at least 24 writes) become runs under the policy below.
        0..=2 => {
            let size = if rng.below(2) == 0 { 24 + rng.below(60) } else { 1 + rng.below(10) };
            let mut writes: BTreeMap<Key, Option<i64>> = BTreeMap::new();
            for _ in 0..size {
                let key = key_of(rng);
                writes.insert(key, (rng.below(4) != 0).then_some(n));
            }
            let batch =
                writes.iter().map(|(k, v)| v.map_or_else(|| BatchWrite::Delete(k.clone()), |n| BatchWrite::Put(item(k, n)))).collect();
            table.batch_write(batch).await.expect("batch write");
            for (key, value) in writes {
                match value {
                    Some(n) => model.insert(key, n),
                    None => model.remove(&key),
                };
            }
        }
        3 => {
            let key = key_of(rng);
            table.put(item(&key, n), Condition::Always).await.expect("put");
            model.insert(key, n);
        }
        4 => {
            let key = key_of(rng);
            table.delete(&key, Condition::Always).await.expect("delete");
            model.remove(&key);
        }
        5 => {
            let key = key_of(rng);
            let outcome = table.put(item(&key, n), Condition::NotExists).await;
            assert_eq!(outcome.is_ok(), !model.contains_key(&key), "put-if-absent of {key:?}: {outcome:?}");
            model.entry(key).or_insert(n);
        }
        6 => {
            let key = key_of(rng);
            let expected = model.get(&key).copied().unwrap_or(-1);
            let guess = if rng.below(2) == 0 { expected } else { expected + 1 };
            let outcome = table.delete(&key, Condition::Equals("n".into(), AttrValue::N(guess))).await;
            let holds = model.get(&key) == Some(&guess);
            assert_eq!(outcome.is_ok(), holds, "delete-if-equal of {key:?}: {outcome:?}");
            if holds {
                model.remove(&key);
            }
        }
        _ => {
            let (a, b) = (key_of(rng), key_of(rng));
            if a == b {
                return;
            }
            let writes = vec![
                Write::Put { item: item(&a, n), condition: Condition::Exists },
                Write::Delete { key: b.clone(), condition: Condition::Always },
            ];
            match table.transact_write(writes).await {
                Ok(()) => {
                    assert!(model.contains_key(&a), "a transaction on the absent {a:?} went through");
                    model.insert(a, n);
                    model.remove(&b);
                }
                Err(error) => {
                    assert!(matches!(error.kind, StorageErrorKind::TransactionCanceled(_)), "{error}");
                    assert!(!model.contains_key(&a), "a transaction on the present {a:?} was cancelled");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_batches_and_merges_read_like_a_map() {
    let policy = RunPolicy { min_run_entries: 24, max_runs: 3, merge_width: 2 };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("table.redb");
    let mut table = open(&path, policy);
    let mut model = Model::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut most_runs = 0;
    for step in 1..=600 {
        random_write(&table, &mut model, &mut rng, step as i64).await;
        most_runs = most_runs.max(table.runs());
        if step % 25 == 0 {
            verify(&table, &model, step).await;
        }
        if step % 150 == 0 {
            drop(table);
            table = open(&path, policy);
            verify(&table, &model, step).await;
        }
    }
    assert!(most_runs >= 2, "the writes never made more than {most_runs} run");
    assert!(table.runs() <= policy.max_runs + 1, "{} runs are left unmerged", table.runs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_no_manifest_names_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("table.redb");
    {
        let table = open(&path, EAGER);
        let batch = (0..10).map(|i| BatchWrite::Put(item(&Key::new("p", format!("s{i}")), i))).collect();
        table.batch_write(batch).await.expect("batch");
    }
    let runs = dir.path().join("table.runs");
    std::fs::write(runs.join("00000000000000ff.run"), b"left by a crash before registration").expect("stray file");
    let table = open(&path, EAGER);
    assert!(!runs.join("00000000000000ff.run").exists(), "the stray run file is still there");
    let page = table.query(&Query::partition("p", 100)).await.expect("query");
    assert_eq!(page.items.len(), 10);
}
