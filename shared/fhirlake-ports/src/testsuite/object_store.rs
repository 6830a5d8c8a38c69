//! Conformance cases of [`ObjectStore`]: each checks one part of its contract.

use bytes::Bytes;

use super::{expect, expect_eq, expect_kind, CaseFuture, CaseResult, Namespace, Step};
use crate::{ObjectMeta, ObjectStore, ObjectWriter, StorageErrorKind, UploadedPart, MIN_PART_BYTES};

/// One object store case, boxed so the cases fit in a table.
pub type ObjectStoreCase = for<'a> fn(&'a dyn ObjectStore) -> CaseFuture<'a>;

#[doc(hidden)]
#[macro_export]
macro_rules! __object_store_cases {
    ($($callback:tt)::+; $args:tt) => {
        $($callback)::+! { $args
            put_get_replace,
            missing_objects_are_not_found,
            get_range_is_clamped,
            head_reports_size,
            empty_objects,
            list_prefix_order_and_paging,
            list_start_after,
            delete_is_idempotent,
            nested_keys,
            multipart_upload_assembles_parts,
            multipart_upload_is_invisible_until_complete,
            multipart_upload_abort_discards_it,
            multipart_upload_rejects_bad_part_lists,
            object_writer_streams_in_parts,
        }
    };
}

/// Every object store case, by name, in run order.
pub const CASES: &[(&str, ObjectStoreCase)] = crate::__object_store_cases! { crate::__testsuite_case_table; () };

/// Lists every key under `prefix` with pages of `limit`, checking each page's contract.
async fn list_all(store: &dyn ObjectStore, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, String> {
    let what = format!("list prefix={prefix:?} limit={limit}");
    let mut all = Vec::new();
    let mut after = start_after.map(str::to_string);
    for _ in 0..10_000 {
        let page = store.list(prefix, after.as_deref(), limit).await.step(&what)?;
        expect(page.objects.len() <= limit, format!("{what}: page of {} objects exceeds the limit", page.objects.len()))?;
        all.extend(page.objects.iter().cloned());
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
    Err(format!("{what}: listing never ended"))
}

fn keys_of(objects: &[ObjectMeta]) -> Vec<String> {
    objects.iter().map(|o| o.key.clone()).collect()
}

/// A stored object reads back whole; a second put replaces it.
pub async fn put_get_replace(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("put_get_replace");
    let key = ns.key("object.json");
    store.put(&key, Bytes::from_static(b"{\"first\":true}")).await.step("put")?;
    expect_eq(store.get(&key).await.step("get")?, Bytes::from_static(b"{\"first\":true}"), "body")?;
    let second: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.put(&key, Bytes::from(second.clone())).await.step("replace")?;
    expect_eq(store.get(&key).await.step("get replaced")?, Bytes::from(second), "replaced body")
}

/// `get`, `get_range` and `head` of a missing object are `NotFound`.
pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("missing_objects_are_not_found");
    let key = ns.key("missing");
    expect_kind(store.get(&key).await, StorageErrorKind::NotFound, "get")?;
    expect_kind(store.get_range(&key, 0..10).await, StorageErrorKind::NotFound, "get_range")?;
    expect_kind(store.head(&key).await, StorageErrorKind::NotFound, "head")?;
    // A "directory" that only exists as a prefix of other keys is not an object either.
    store.put(&ns.key("dir/child"), Bytes::from_static(b"x")).await.step("put child")?;
    expect_kind(store.get(&ns.key("dir")).await, StorageErrorKind::NotFound, "get of a key prefix")?;
    expect_kind(store.head(&ns.key("dir")).await, StorageErrorKind::NotFound, "head of a key prefix")
}

/// `get_range` returns the requested bytes, clamped to the object's end.
pub async fn get_range_is_clamped(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("get_range_is_clamped");
    let key = ns.key("digits");
    store.put(&key, Bytes::from_static(b"0123456789")).await.step("put")?;
    let cases: [(std::ops::Range<u64>, &[u8]); 6] =
        [(0..10, b"0123456789"), (2..5, b"234"), (9..10, b"9"), (5..100, b"56789"), (0..u64::MAX, b"0123456789"), (3..3, b"")];
    for (range, expected) in cases {
        let what = format!("range {range:?}");
        expect_eq(store.get_range(&key, range).await.step(&what)?, Bytes::from_static(expected), &what)?;
    }
    for range in [10..20, 100..200] {
        let what = format!("range {range:?} past the end");
        expect_eq(store.get_range(&key, range).await.step(&what)?, Bytes::new(), &what)?;
    }
    Ok(())
}

/// `head` reports the key and size of the current object.
pub async fn head_reports_size(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("head_reports_size");
    let key = ns.key("sized");
    store.put(&key, Bytes::from(vec![7u8; 1234])).await.step("put")?;
    expect_eq(store.head(&key).await.step("head")?, ObjectMeta { key: key.clone(), size: 1234 }, "head")?;
    store.put(&key, Bytes::from(vec![7u8; 5])).await.step("replace")?;
    expect_eq(store.head(&key).await.step("head after replace")?.size, 5, "size after replace")
}

/// Empty objects exist, read back empty and list with size 0.
pub async fn empty_objects(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("empty_objects");
    let key = ns.key("empty");
    store.put(&key, Bytes::new()).await.step("put")?;
    expect_eq(store.get(&key).await.step("get")?, Bytes::new(), "body")?;
    expect_eq(store.get_range(&key, 0..10).await.step("get_range")?, Bytes::new(), "range")?;
    expect_eq(store.head(&key).await.step("head")?.size, 0, "size")?;
    expect_eq(list_all(store, ns.as_str(), None, 10).await?, vec![ObjectMeta { key, size: 0 }], "listing")
}

/// Listing returns exactly the keys with the prefix, ascending by bytes, across pages.
pub async fn list_prefix_order_and_paging(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("list_prefix_order_and_paging");
    let names = ["a/1", "a/10", "a/2", "a-b", "a/sub/deep/k", "a.txt", "ab", "b/x/y/z", "a/sub/k", "a0", "é", "Z"];
    for (i, name) in names.iter().enumerate() {
        store.put(&ns.key(name), Bytes::from(vec![b'x'; i + 1])).await.step("put")?;
    }
    let mut expected: Vec<String> = names.iter().map(|n| ns.key(n)).collect();
    expected.sort();
    for limit in [1, 2, 5, 100] {
        let listed = list_all(store, &ns.key(""), None, limit).await?;
        expect_eq(keys_of(&listed), expected.clone(), &format!("all keys with limit {limit}"))?;
    }
    let listed = list_all(store, &ns.key(""), None, 100).await?;
    let sizes_ok = listed.iter().all(|o| names.iter().position(|n| ns.key(n) == o.key).map(|i| i as u64 + 1) == Some(o.size));
    expect(sizes_ok, "listed sizes do not match the stored objects")?;
    let prefixes: [(&str, Vec<&str>); 6] = [
        ("a/", vec!["a/1", "a/10", "a/2", "a/sub/deep/k", "a/sub/k"]),
        ("a/1", vec!["a/1", "a/10"]),
        ("a/sub/", vec!["a/sub/deep/k", "a/sub/k"]),
        ("a", vec!["a-b", "a.txt", "a/1", "a/10", "a/2", "a/sub/deep/k", "a/sub/k", "a0", "ab"]),
        ("b/x/y/z", vec!["b/x/y/z"]),
        ("c", vec![]),
    ];
    for (prefix, names) in prefixes {
        let expected: Vec<String> = names.iter().map(|n| ns.key(n)).collect();
        for limit in [1, 3, 100] {
            let listed = list_all(store, &ns.key(prefix), None, limit).await?;
            expect_eq(keys_of(&listed), expected.clone(), &format!("prefix {prefix:?} limit {limit}"))?;
        }
    }
    Ok(())
}

/// `start_after` lists strictly after the given key, which need not exist.
pub async fn list_start_after(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("list_start_after");
    for name in ["k1", "k2", "k3/a", "k3/b", "k4"] {
        store.put(&ns.key(name), Bytes::from_static(b"x")).await.step("put")?;
    }
    let prefix = ns.key("");
    let cases: [(&str, Vec<&str>); 6] = [
        ("k1", vec!["k2", "k3/a", "k3/b", "k4"]),
        ("k2", vec!["k3/a", "k3/b", "k4"]),
        ("k3/a", vec!["k3/b", "k4"]),
        ("k3", vec!["k3/a", "k3/b", "k4"]),
        ("k35", vec!["k4"]),
        ("k4", vec![]),
    ];
    for (after, names) in cases {
        let expected: Vec<String> = names.iter().map(|n| ns.key(n)).collect();
        let listed = list_all(store, &prefix, Some(&ns.key(after)), 2).await?;
        expect_eq(keys_of(&listed), expected, &format!("start_after {after:?}"))?;
    }
    // A start_after before the prefix lists from the prefix's first key.
    let listed = list_all(store, &prefix, Some(ns.as_str()), 100).await?;
    expect_eq(listed.len(), 5, "start_after before the prefix")
}

/// Deleting removes the object; deleting again, or a key never written, succeeds.
pub async fn delete_is_idempotent(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("delete_is_idempotent");
    let key = ns.key("doomed");
    store.put(&key, Bytes::from_static(b"x")).await.step("put")?;
    store.delete(&key).await.step("delete")?;
    expect_kind(store.get(&key).await, StorageErrorKind::NotFound, "get after delete")?;
    store.delete(&key).await.step("delete again")?;
    store.delete(&ns.key("never/written")).await.step("delete a key never written")?;
    expect_eq(list_all(store, ns.as_str(), None, 10).await?, Vec::new(), "listing after delete")
}

/// Keys with many `/` segments work, and siblings survive a delete.
pub async fn nested_keys(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("nested_keys");
    let deep = ns.key("datastore/0123/bodies/Patient/ab/cd/ef.json");
    let sibling = ns.key("datastore/0123/bodies/Patient/ab/other.json");
    store.put(&deep, Bytes::from_static(b"deep")).await.step("put deep")?;
    store.put(&sibling, Bytes::from_static(b"sibling")).await.step("put sibling")?;
    expect_eq(store.get(&deep).await.step("get deep")?, Bytes::from_static(b"deep"), "deep body")?;
    store.delete(&deep).await.step("delete deep")?;
    expect_eq(store.get(&sibling).await.step("get sibling")?, Bytes::from_static(b"sibling"), "sibling body")?;
    expect_eq(keys_of(&list_all(store, ns.as_str(), None, 10).await?), vec![sibling.clone()], "listing after delete")?;
    store.put(&deep, Bytes::from_static(b"again")).await.step("put deep again")?;
    expect_eq(store.get(&deep).await.step("get deep again")?, Bytes::from_static(b"again"), "deep body again")
}

/// A body of `len` bytes that differs at every offset from a shifted copy of itself.
fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Parts uploaded out of order, one replaced, complete into their concatenation in number
/// order; the upload then no longer exists.
pub async fn multipart_upload_assembles_parts(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("multipart_upload_assembles_parts");
    let key = ns.key("assembled");
    let (first, second, third) = (patterned(MIN_PART_BYTES, 1), patterned(MIN_PART_BYTES, 2), patterned(1000, 3));
    let upload = store.create_upload(&key).await.step("create upload")?;
    let part3 = store.upload_part(&upload, 3, Bytes::from(third.clone())).await.step("upload part 3")?;
    store.upload_part(&upload, 1, Bytes::from(vec![0u8; 10])).await.step("upload a part 1 to be replaced")?;
    let part1 = store.upload_part(&upload, 1, Bytes::from(first.clone())).await.step("replace part 1")?;
    let part2 = store.upload_part(&upload, 2, Bytes::from(second.clone())).await.step("upload part 2")?;
    store.complete_upload(&upload, &[part1, part2, part3]).await.step("complete")?;
    let whole: Vec<u8> = [first, second, third].concat();
    expect_eq(store.head(&key).await.step("head")?.size, whole.len() as u64, "size")?;
    expect(store.get(&key).await.step("get")?.as_ref() == whole.as_slice(), "the object is not the parts' concatenation")?;
    let tail = store.get_range(&key, (whole.len() - 1500) as u64..whole.len() as u64).await.step("range")?;
    expect(tail.as_ref() == &whole[whole.len() - 1500..], "a range across the last two parts differs")?;
    expect_kind(store.upload_part(&upload, 4, Bytes::from_static(b"late")).await, StorageErrorKind::NotFound, "part after complete")
}

/// Until completion an upload's key shows the previous object (or nothing) and lists as before.
pub async fn multipart_upload_is_invisible_until_complete(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("multipart_upload_is_invisible_until_complete");
    let (fresh, replaced) = (ns.key("fresh"), ns.key("replaced"));
    store.put(&replaced, Bytes::from_static(b"old")).await.step("put the old object")?;
    let mut uploads = Vec::new();
    for key in [&fresh, &replaced] {
        let upload = store.create_upload(key).await.step("create upload")?;
        let part = store.upload_part(&upload, 1, Bytes::from_static(b"new")).await.step("upload part")?;
        uploads.push((upload, part));
    }
    expect_kind(store.get(&fresh).await, StorageErrorKind::NotFound, "get of an uncompleted upload")?;
    expect_eq(store.get(&replaced).await.step("get old")?, Bytes::from_static(b"old"), "old object during the upload")?;
    expect_eq(keys_of(&list_all(store, ns.as_str(), None, 10).await?), vec![replaced.clone()], "listing during the uploads")?;
    for (upload, part) in uploads {
        store.complete_upload(&upload, &[part]).await.step("complete")?;
    }
    expect_eq(store.get(&fresh).await.step("get fresh")?, Bytes::from_static(b"new"), "completed object")?;
    expect_eq(store.get(&replaced).await.step("get replaced")?, Bytes::from_static(b"new"), "replaced object")
}

/// Aborting discards the parts, leaves any earlier object alone, and is idempotent.
pub async fn multipart_upload_abort_discards_it(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("multipart_upload_abort_discards_it");
    let key = ns.key("aborted");
    store.put(&key, Bytes::from_static(b"kept")).await.step("put")?;
    let upload = store.create_upload(&key).await.step("create upload")?;
    let part = store.upload_part(&upload, 1, Bytes::from_static(b"discarded")).await.step("upload part")?;
    store.abort_upload(&upload).await.step("abort")?;
    store.abort_upload(&upload).await.step("abort again")?;
    expect_kind(store.complete_upload(&upload, &[part]).await, StorageErrorKind::NotFound, "complete after abort")?;
    expect_kind(store.upload_part(&upload, 2, Bytes::from_static(b"x")).await, StorageErrorKind::NotFound, "part after abort")?;
    expect_eq(store.get(&key).await.step("get")?, Bytes::from_static(b"kept"), "object after abort")
}

/// Completion rejects an empty, unordered or unknown part list, and a small part before the
/// last; the upload survives a rejected completion.
pub async fn multipart_upload_rejects_bad_part_lists(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("multipart_upload_rejects_bad_part_lists");
    let key = ns.key("rejected");
    let upload = store.create_upload(&key).await.step("create upload")?;
    expect_kind(store.upload_part(&upload, 0, Bytes::from_static(b"x")).await, StorageErrorKind::Invalid, "part number 0")?;
    expect_kind(store.upload_part(&upload, 10_001, Bytes::from_static(b"x")).await, StorageErrorKind::Invalid, "part number 10001")?;
    let small = store.upload_part(&upload, 1, Bytes::from_static(b"tiny")).await.step("upload a small part")?;
    let last = store.upload_part(&upload, 2, Bytes::from_static(b"last")).await.step("upload the last part")?;
    expect_kind(store.complete_upload(&upload, &[]).await, StorageErrorKind::Invalid, "no parts")?;
    expect_kind(store.complete_upload(&upload, &[last.clone(), small.clone()]).await, StorageErrorKind::Invalid, "descending parts")?;
    let unknown = UploadedPart { number: 3, etag: "\"0123456789abcdef0123456789abcdef\"".into() };
    expect_kind(store.complete_upload(&upload, &[small.clone(), unknown]).await, StorageErrorKind::Invalid, "a part never uploaded")?;
    expect_kind(store.complete_upload(&upload, &[small.clone(), last]).await, StorageErrorKind::Invalid, "a small part before the last")?;
    expect_kind(store.get(&key).await, StorageErrorKind::NotFound, "get after rejected completions")?;
    store.complete_upload(&upload, &[small]).await.step("complete with the one small part")?;
    expect_eq(store.get(&key).await.step("get")?, Bytes::from_static(b"tiny"), "object")
}

/// [`ObjectWriter`] writes small objects with one put and large ones in parts, byte-exact.
pub async fn object_writer_streams_in_parts(store: &dyn ObjectStore) -> CaseResult {
    let ns = Namespace::new("object_writer_streams_in_parts");
    let (small_key, large_key) = (ns.key("small.ndjson"), ns.key("large.ndjson"));
    let mut small = ObjectWriter::new(store, &small_key);
    small.write(b"{\"a\":1}\n").await.step("write small")?;
    expect_eq(small.finish().await.step("finish small")?, 8, "small size")?;
    expect_eq(store.get(&small_key).await.step("get small")?, Bytes::from_static(b"{\"a\":1}\n"), "small body")?;

    let body = patterned(2 * MIN_PART_BYTES + 12_345, 9);
    let mut large = ObjectWriter::with_part_size(store, &large_key, MIN_PART_BYTES);
    for chunk in body.chunks(1 << 20) {
        large.write(chunk).await.step("write large")?;
    }
    expect_kind(store.get(&large_key).await, StorageErrorKind::NotFound, "get before finish")?;
    expect_eq(large.finish().await.step("finish large")?, body.len() as u64, "large size")?;
    expect(store.get(&large_key).await.step("get large")?.as_ref() == body.as_slice(), "large body differs")?;

    let mut aborted = ObjectWriter::with_part_size(store, ns.key("aborted"), MIN_PART_BYTES);
    aborted.write(&body).await.step("write aborted")?;
    aborted.abort().await.step("abort")?;
    expect_kind(store.get(&ns.key("aborted")).await, StorageErrorKind::NotFound, "aborted writer's object")
}
