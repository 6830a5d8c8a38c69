//! The storage conformance suite against the embedded adapters, each on a fresh temp dir.

use fhirlake_embedded::{LocalKeyFile, LocalObjectStore, RedbItemTable};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

async fn item_table() -> (TempDir, RedbItemTable) {
    let dir = temp_dir();
    let table = RedbItemTable::open(dir.path().join("table.redb")).expect("open table");
    (dir, table)
}

async fn object_store() -> (TempDir, LocalObjectStore) {
    let dir = temp_dir();
    let store = LocalObjectStore::new(dir.path().join("objects")).expect("open object store");
    (dir, store)
}

async fn key_file() -> (TempDir, LocalKeyFile) {
    let dir = temp_dir();
    let keys = LocalKeyFile::open_or_create(dir.path().join("master.key")).expect("open key file");
    (dir, keys)
}

mod redb_item_table {
    fhirlake_ports::item_table_tests!(super::item_table());
}

mod local_object_store {
    fhirlake_ports::object_store_tests!(super::object_store());
}

mod local_key_file {
    fhirlake_ports::key_service_tests!(super::key_file());
}

/// The whole suite twice on one table: cases do not depend on an empty store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn item_table_suite_runs_twice_on_one_table() {
    let (_dir, table) = item_table().await;
    for _ in 0..2 {
        fhirlake_ports::testsuite::item_table_suite(&table).await.unwrap_or_else(|failure| panic!("{failure}"));
    }
}
