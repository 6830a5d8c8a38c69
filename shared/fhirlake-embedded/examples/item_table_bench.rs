//! Throughput and latency of the embedded item table on a temporary directory.
//!
//! ```text
//! cargo run --release -p fhirlake-embedded --example item_table_bench [-- --items 20000 --clients 64]
//! ```
//!
//! Items are ~1 KB, spread over partitions of 100 items. Each phase runs its operations from
//! one client (sequential: every write waits for its own fsync) and from `--clients`
//! concurrent clients (writes share commits), and prints operations per second with p50/p99
//! latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhirlake_embedded::RedbItemTable;
use fhirlake_ports::{AttrValue, Condition, Item, ItemTable, Key, Query, SkRange, StorageResult, Write};

const PARTITION_SIZE: usize = 100;

fn key(i: usize) -> Key {
    Key::new(format!("ds#bench#p{:05}", i / PARTITION_SIZE), format!("Patient#{i:08}"))
}

fn item(key: Key, version: i64) -> Item {
    Item::new(key)
        .with("version", AttrValue::N(version))
        .with("body", AttrValue::B(vec![0xa5; 1000]))
        .with("deleted", AttrValue::Bool(false))
}

struct Args {
    items: usize,
    clients: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { items: 20_000, clients: 64 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = value.parse::<usize>().map_err(|_| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--items" => args.items = number.max(PARTITION_SIZE),
            "--clients" => args.clients = number.max(1),
            _ => return Err(format!("unknown flag {flag} (expected --items or --clients)")),
        }
    }
    Ok(args)
}

/// Runs `ops` operations (`op(i)` for i in 0..ops) from `clients` concurrent tasks and
/// prints the rate and latency percentiles.
async fn phase<F, Fut>(name: &str, clients: usize, ops: usize, op: F) -> StorageResult<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = StorageResult<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return Ok::<_, fhirlake_ports::StorageError>(latencies);
                }
                let at = Instant::now();
                op(i).await?;
                latencies.push(at.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        let done = task.await.map_err(|_| fhirlake_ports::StorageError::internal("bench task panicked"))??;
        latencies.extend(done);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{name:<44} {clients:>4} {ops:>8} {:>12.0} {:>9.3} {:>9.3}", ops as f64 / elapsed.as_secs_f64(), ms(pct(0.50)), ms(pct(0.99)));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let table = Arc::new(RedbItemTable::open(dir.path().join("bench.redb"))?);
    let (n, clients) = (args.items, args.clients);
    let sequential_writes = (n / 10).clamp(1, 2000);
    let partitions = n / PARTITION_SIZE;
    println!("embedded item table: {n} items of ~1 KB, {PARTITION_SIZE} per partition, data in {}", dir.path().display());
    println!("{:<44} {:>4} {:>8} {:>12} {:>9} {:>9}", "phase", "cli", "ops", "ops/s", "p50 ms", "p99 ms");

    let t = Arc::clone(&table);
    phase("put, create-if-absent", clients, n, move |i| {
        let t = Arc::clone(&t);
        async move { t.put(item(key(i), 1), Condition::NotExists).await }
    })
    .await?;
    let t = Arc::clone(&table);
    phase("put, create-if-absent", 1, sequential_writes, move |i| {
        let t = Arc::clone(&t);
        async move { t.put(item(Key::new("ds#bench#seq", format!("{i:08}")), 1), Condition::NotExists).await }
    })
    .await?;

    // An update as the FHIR layer does it: replace the current version if it is still the
    // one read, and add the history item, in one transaction.
    let transact = |t: Arc<RedbItemTable>| {
        move |i: usize| {
            let t = Arc::clone(&t);
            async move {
                let current = key(i);
                let history = Key::new(current.pk.clone(), format!("{}#v2", current.sk));
                t.transact_write(vec![
                    Write::Put { item: item(current, 2), condition: Condition::Equals("version".into(), AttrValue::N(1)) },
                    Write::Put { item: item(history, 2), condition: Condition::NotExists },
                ])
                .await
            }
        }
    };
    phase("transact_write, 2 conditional puts", clients, n / 2, transact(Arc::clone(&table))).await?;
    let t = Arc::clone(&table);
    let offset = n / 2;
    let sequential = move |i: usize| transact(Arc::clone(&t))(offset + i);
    phase("transact_write, 2 conditional puts", 1, sequential_writes.min(n - offset), sequential).await?;

    for c in [1, clients] {
        let t = Arc::clone(&table);
        phase("get", c, n, move |i| {
            let t = Arc::clone(&t);
            async move { t.get(&key((i * 7919) % n)).await.map(|_| ()) }
        })
        .await?;
    }
    for c in [1, clients] {
        let t = Arc::clone(&table);
        phase("query page of 20 (forward, prefix range)", c, n / 4, move |i| {
            let t = Arc::clone(&t);
            async move {
                let pk = format!("ds#bench#p{:05}", (i * 31) % partitions);
                let query = Query::partition(pk, 20).range(SkRange::Prefix("Patient#".into()));
                t.query(&query).await.map(|_| ())
            }
        })
        .await?;
        let t = Arc::clone(&table);
        phase("query page of 20 (backward, after a key)", c, n / 4, move |i| {
            let t = Arc::clone(&t);
            async move {
                let k = key((i * 31) % n);
                let query = Query::partition(k.pk, 20).backward().after(Some(k.sk));
                t.query(&query).await.map(|_| ())
            }
        })
        .await?;
    }
    Ok(())
}
