//! Data written through the embedded adapters is still there after they are dropped and
//! reopened (what `fhirlake serve` relies on across restarts).

use bytes::Bytes;
use fhirlake_embedded::EmbeddedBackend;
use fhirlake_ports::{AttrValue, Condition, Item, ItemTable, Key, KeyService, ObjectStore, Query, Write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = Key::new("ds#1", "Patient#1");
    let wrapped = {
        let backend = EmbeddedBackend::open(dir.path()).expect("open");
        backend.items.put(Item::new(key.clone()).with("version", AttrValue::N(1)), Condition::NotExists).await.expect("put");
        let writes = (0..10)
            .map(|i| Write::Put {
                item: Item::new(Key::new("ds#1", format!("h#{i}"))).with("i", AttrValue::N(i)),
                condition: Condition::NotExists,
            })
            .collect();
        backend.items.transact_write(writes).await.expect("transact");
        backend.items.delete(&Key::new("ds#1", "h#3"), Condition::Exists).await.expect("delete");
        backend.objects.put("ds/1/body", Bytes::from_static(b"body")).await.expect("put object");
        let data_key = backend.keys.generate_data_key(&backend.keys.default_key_id(), "ds#1").await.expect("data key");
        (data_key.wrapped.clone(), *data_key.plaintext)
    };
    let backend = EmbeddedBackend::open(dir.path()).expect("reopen");
    let item = backend.items.get(&key).await.expect("get").expect("item after reopen");
    assert_eq!(item.get_i64("version"), Some(1));
    let page = backend.items.query(&Query::partition("ds#1", 100)).await.expect("query");
    let sks: Vec<&str> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    assert_eq!(sks, ["Patient#1", "h#0", "h#1", "h#2", "h#4", "h#5", "h#6", "h#7", "h#8", "h#9"]);
    assert_eq!(backend.objects.get("ds/1/body").await.expect("get object"), Bytes::from_static(b"body"));
    let unwrapped = backend.keys.decrypt_data_key(&backend.keys.default_key_id(), "ds#1", &wrapped.0).await.expect("decrypt");
    assert_eq!(*unwrapped, wrapped.1);
}

#[tokio::test]
async fn a_table_open_elsewhere_is_refused_then_reopens_after_drop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = EmbeddedBackend::open(dir.path()).expect("open");
    let error = EmbeddedBackend::open(dir.path()).expect_err("second open while the first is alive");
    assert!(error.message.contains("already open"), "{error}");
    drop(first);
    EmbeddedBackend::open(dir.path()).expect("open after drop");
}
