//! Conformance cases of [`ItemTable`]: each checks one part of its contract.

use std::collections::BTreeSet;

use super::{expect, expect_eq, expect_kind, join_all, CaseFuture, CaseResult, Namespace, Step};
use crate::{
    AttrValue, BatchWrite, Condition, Item, ItemTable, Key, Query, QueryPage, SkRange, StorageError, StorageErrorKind, Write,
    MAX_TRANSACT_ITEMS,
};

/// One item table case, boxed so the cases fit in a table.
pub type ItemTableCase = for<'a> fn(&'a dyn ItemTable) -> CaseFuture<'a>;

#[doc(hidden)]
#[macro_export]
macro_rules! __item_table_cases {
    ($($callback:tt)::+; $args:tt) => {
        $($callback)::+! { $args
            get_missing_and_present,
            put_replaces_whole_item,
            put_if_not_exists,
            put_if_exists,
            put_if_equals,
            delete_with_conditions,
            transact_applies_every_kind_of_action,
            transact_is_all_or_nothing,
            transact_names_every_failed_condition,
            transact_check_failure_cancels,
            transact_rejects_malformed_requests,
            transact_accepts_the_maximum_size,
            query_ranges_and_directions,
            query_start_after,
            query_pages_cover_every_item_once,
            query_never_leaks_other_partitions,
            query_rejects_bad_requests,
            sort_keys_compare_bytewise,
            batch_get_returns_existing_items,
            batch_write_puts_and_deletes,
            batch_write_rejects_malformed_batches,
            write_each_applies_each_write_alone,
            item_size_limit,
            transaction_size_limit,
            attribute_types_round_trip,
            keys_are_validated,
            concurrent_conditional_writers,
            concurrent_creates_have_one_winner,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __testsuite_case_table {
    (() $($case:ident),* $(,)?) => {
        &[$((stringify!($case), |port| ::std::boxed::Box::pin($case(port)))),*]
    };
}

/// Every item table case, by name, in run order.
pub const CASES: &[(&str, ItemTableCase)] = crate::__item_table_cases! { crate::__testsuite_case_table; () };

fn item(key: &Key, version: i64) -> Item {
    Item::new(key.clone()).with("version", AttrValue::N(version)).with("body", AttrValue::S(format!("v{version}")))
}

fn version_of(found: &Option<Item>) -> Option<i64> {
    found.as_ref().and_then(|item| item.get_i64("version"))
}

fn sort_keys(page: &QueryPage) -> Vec<&str> {
    page.items.iter().map(|item| item.key.sk.as_str()).collect()
}

async fn stored_version(table: &dyn ItemTable, key: &Key, what: &str) -> Result<Option<i64>, String> {
    Ok(version_of(&table.get(key).await.step(what)?))
}

/// `get` returns `None` for a missing item and the stored item once written.
pub async fn get_missing_and_present(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("get_missing_and_present");
    let key = Key::new(ns.key("p"), "item");
    expect_eq(table.get(&key).await.step("get missing")?, None, "get missing")?;
    let written = item(&key, 1);
    table.put(written.clone(), Condition::Always).await.step("put")?;
    expect_eq(table.get(&key).await.step("get present")?, Some(written), "get present")?;
    expect_eq(table.get(&Key::new(ns.key("p"), "other")).await.step("get sibling")?, None, "get missing sibling")
}

/// `put` replaces the whole item: attributes absent from the new item are gone.
pub async fn put_replaces_whole_item(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("put_replaces_whole_item");
    let key = Key::new(ns.key("p"), "item");
    let first = Item::new(key.clone()).with("a", AttrValue::S("1".into())).with("b", AttrValue::N(2));
    table.put(first, Condition::Always).await.step("first put")?;
    let second = Item::new(key.clone()).with("c", AttrValue::Bool(true));
    table.put(second.clone(), Condition::Always).await.step("second put")?;
    expect_eq(table.get(&key).await.step("get")?, Some(second), "item after replace")
}

/// `NotExists` holds only while the item is absent; a failed put writes nothing.
pub async fn put_if_not_exists(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("put_if_not_exists");
    let key = Key::new(ns.key("p"), "item");
    table.put(item(&key, 1), Condition::NotExists).await.step("create absent item")?;
    expect_kind(table.put(item(&key, 2), Condition::NotExists).await, StorageErrorKind::ConditionFailed, "create existing item")?;
    expect_eq(stored_version(table, &key, "get").await?, Some(1), "version after failed create")
}

/// `Exists` holds only while the item is present; a failed put writes nothing.
pub async fn put_if_exists(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("put_if_exists");
    let key = Key::new(ns.key("p"), "item");
    expect_kind(table.put(item(&key, 1), Condition::Exists).await, StorageErrorKind::ConditionFailed, "replace absent item")?;
    expect_eq(table.get(&key).await.step("get after failed replace")?, None, "item after failed replace")?;
    table.put(item(&key, 1), Condition::Always).await.step("create")?;
    table.put(item(&key, 2), Condition::Exists).await.step("replace existing item")?;
    expect_eq(stored_version(table, &key, "get").await?, Some(2), "version after replace")
}

/// `Equals` holds only when the item exists and the attribute has the same type and value.
pub async fn put_if_equals(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("put_if_equals");
    let key = Key::new(ns.key("p"), "item");
    let at = |v: i64| Condition::Equals("version".into(), AttrValue::N(v));
    expect_kind(table.put(item(&key, 1), at(0)).await, StorageErrorKind::ConditionFailed, "equals on absent item")?;
    expect_eq(table.get(&key).await.step("get")?, None, "item after failed put")?;
    table.put(item(&key, 1), Condition::NotExists).await.step("create")?;
    expect_kind(table.put(item(&key, 9), at(2)).await, StorageErrorKind::ConditionFailed, "equals with a stale version")?;
    let wrong_type = Condition::Equals("version".into(), AttrValue::S("1".into()));
    expect_kind(table.put(item(&key, 9), wrong_type).await, StorageErrorKind::ConditionFailed, "equals with a value of another type")?;
    let missing_attr = Condition::Equals("absent".into(), AttrValue::N(1));
    expect_kind(table.put(item(&key, 9), missing_attr).await, StorageErrorKind::ConditionFailed, "equals on a missing attribute")?;
    expect_eq(stored_version(table, &key, "get").await?, Some(1), "version after failed puts")?;
    table.put(item(&key, 2), at(1)).await.step("put with the current version")?;
    expect_eq(stored_version(table, &key, "get").await?, Some(2), "version after conditional put")
}

/// Deletes honour their condition; deleting a missing item unconditionally succeeds.
pub async fn delete_with_conditions(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("delete_with_conditions");
    let key = Key::new(ns.key("p"), "item");
    table.delete(&key, Condition::Always).await.step("delete missing item")?;
    expect_kind(table.delete(&key, Condition::Exists).await, StorageErrorKind::ConditionFailed, "delete missing item if exists")?;
    table.delete(&key, Condition::NotExists).await.step("delete missing item if not exists")?;
    table.put(item(&key, 3), Condition::Always).await.step("create")?;
    let at = |v: i64| Condition::Equals("version".into(), AttrValue::N(v));
    expect_kind(table.delete(&key, at(2)).await, StorageErrorKind::ConditionFailed, "delete with a stale version")?;
    expect_kind(table.delete(&key, Condition::NotExists).await, StorageErrorKind::ConditionFailed, "delete existing item if not exists")?;
    expect_eq(stored_version(table, &key, "get after failed deletes").await?, Some(3), "version after failed deletes")?;
    table.delete(&key, at(3)).await.step("delete with the current version")?;
    expect_eq(table.get(&key).await.step("get after delete")?, None, "item after delete")?;
    table.put(item(&key, 4), Condition::Always).await.step("recreate")?;
    table.delete(&key, Condition::Exists).await.step("delete existing item if exists")?;
    expect_eq(table.get(&key).await.step("get after second delete")?, None, "item after second delete")
}

/// A successful transaction applies puts and deletes and leaves checked items alone.
pub async fn transact_applies_every_kind_of_action(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_applies_every_kind_of_action");
    let (new, old, checked) = (Key::new(ns.key("p"), "new"), Key::new(ns.key("p"), "old"), Key::new(ns.key("q"), "checked"));
    table.put(item(&old, 1), Condition::Always).await.step("seed old")?;
    table.put(item(&checked, 7), Condition::Always).await.step("seed checked")?;
    table
        .transact_write(vec![
            Write::Put { item: item(&new, 1), condition: Condition::NotExists },
            Write::Delete { key: old.clone(), condition: Condition::Equals("version".into(), AttrValue::N(1)) },
            Write::Check { key: checked.clone(), condition: Condition::Equals("version".into(), AttrValue::N(7)) },
        ])
        .await
        .step("transaction")?;
    expect_eq(stored_version(table, &new, "get new").await?, Some(1), "put item")?;
    expect_eq(table.get(&old).await.step("get old")?, None, "deleted item")?;
    expect_eq(table.get(&checked).await.step("get checked")?, Some(item(&checked, 7)), "checked item")?;
    // Unconditional delete of a missing item inside a transaction is not an error either.
    table
        .transact_write(vec![Write::Delete { key: old.clone(), condition: Condition::Always }])
        .await
        .step("transaction deleting a missing item")
}

/// A failed condition at index k cancels the transaction with `[k]` and applies nothing.
pub async fn transact_is_all_or_nothing(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_is_all_or_nothing");
    let (a, b, c) = (Key::new(ns.key("p"), "a"), Key::new(ns.key("p"), "b"), Key::new(ns.key("p"), "c"));
    table.put(item(&b, 1), Condition::Always).await.step("seed b")?;
    table.put(item(&c, 1), Condition::Always).await.step("seed c")?;
    for failing in 0..3 {
        let cond = |index: usize, holds: Condition, fails: Condition| if index == failing { fails } else { holds };
        let writes = vec![
            Write::Put { item: item(&a, 1), condition: cond(0, Condition::NotExists, Condition::Exists) },
            Write::Put { item: item(&b, 2), condition: cond(1, Condition::Exists, Condition::NotExists) },
            Write::Delete {
                key: c.clone(),
                condition: cond(
                    2,
                    Condition::Equals("version".into(), AttrValue::N(1)),
                    Condition::Equals("version".into(), AttrValue::N(5)),
                ),
            },
        ];
        let what = format!("transaction failing at index {failing}");
        expect_kind(table.transact_write(writes).await, StorageErrorKind::TransactionCanceled(vec![failing]), &what)?;
        expect_eq(table.get(&a).await.step(&what)?, None, &format!("{what}: item a"))?;
        expect_eq(stored_version(table, &b, &what).await?, Some(1), &format!("{what}: item b"))?;
        expect_eq(stored_version(table, &c, &what).await?, Some(1), &format!("{what}: item c"))?;
    }
    Ok(())
}

/// A cancellation names every write whose condition failed, in order.
pub async fn transact_names_every_failed_condition(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_names_every_failed_condition");
    let keys: Vec<Key> = (0..4).map(|i| Key::new(ns.key("p"), format!("k{i}"))).collect();
    table.put(item(&keys[1], 1), Condition::Always).await.step("seed")?;
    let writes = vec![
        Write::Put { item: item(&keys[0], 1), condition: Condition::Exists },
        Write::Put { item: item(&keys[1], 2), condition: Condition::Exists },
        Write::Check { key: keys[2].clone(), condition: Condition::Exists },
        Write::Delete { key: keys[3].clone(), condition: Condition::Always },
    ];
    expect_kind(table.transact_write(writes).await, StorageErrorKind::TransactionCanceled(vec![0, 2]), "two failed conditions")?;
    expect_eq(stored_version(table, &keys[1], "get").await?, Some(1), "item of a passing write")
}

/// A failing `Check` cancels the transaction like any other failed condition.
pub async fn transact_check_failure_cancels(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_check_failure_cancels");
    let (target, guard) = (Key::new(ns.key("p"), "target"), Key::new(ns.key("p"), "guard"));
    table.put(item(&guard, 1), Condition::Always).await.step("seed guard")?;
    let writes = vec![
        Write::Put { item: item(&target, 1), condition: Condition::Always },
        Write::Check { key: guard.clone(), condition: Condition::Equals("version".into(), AttrValue::N(2)) },
    ];
    expect_kind(table.transact_write(writes).await, StorageErrorKind::TransactionCanceled(vec![1]), "failing check")?;
    expect_eq(table.get(&target).await.step("get target")?, None, "target after cancelled transaction")?;
    let missing = Key::new(ns.key("p"), "missing");
    let writes = vec![
        Write::Check { key: missing, condition: Condition::NotExists },
        Write::Put { item: item(&target, 1), condition: Condition::Always },
    ];
    table.transact_write(writes).await.step("passing check")?;
    expect_eq(stored_version(table, &target, "get target").await?, Some(1), "target after passing check")
}

/// Empty, oversized and duplicate-key transactions are `Invalid` and write nothing.
pub async fn transact_rejects_malformed_requests(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_rejects_malformed_requests");
    expect_kind(table.transact_write(Vec::new()).await, StorageErrorKind::Invalid, "empty transaction")?;
    let too_many: Vec<Write> = (0..=MAX_TRANSACT_ITEMS)
        .map(|i| Write::Put { item: item(&Key::new(ns.key("many"), format!("{i:04}")), 1), condition: Condition::Always })
        .collect();
    expect_kind(table.transact_write(too_many).await, StorageErrorKind::Invalid, "101 actions")?;
    let page = table.query(&Query::partition(ns.key("many"), 10)).await.step("query after rejected transaction")?;
    expect_eq(page.items.len(), 0, "items written by the rejected transaction")?;
    let key = Key::new(ns.key("dup"), "same");
    let duplicate = vec![
        Write::Put { item: item(&key, 1), condition: Condition::Always },
        Write::Check { key: key.clone(), condition: Condition::NotExists },
    ];
    expect_kind(table.transact_write(duplicate).await, StorageErrorKind::Invalid, "duplicate keys")?;
    expect_eq(table.get(&key).await.step("get")?, None, "item of the duplicate-key transaction")
}

/// Exactly [`MAX_TRANSACT_ITEMS`] actions are accepted and all applied.
pub async fn transact_accepts_the_maximum_size(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transact_accepts_the_maximum_size");
    let writes: Vec<Write> = (0..MAX_TRANSACT_ITEMS)
        .map(|i| Write::Put { item: item(&Key::new(ns.key("p"), format!("{i:04}")), 1), condition: Condition::NotExists })
        .collect();
    table.transact_write(writes).await.step("100 actions")?;
    let mut seen = 0;
    let mut start_after = None;
    loop {
        let page = table.query(&Query::partition(ns.key("p"), 1000).after(start_after)).await.step("query")?;
        seen += page.items.len();
        match page.last_evaluated {
            Some(last) => start_after = Some(last),
            None => break,
        }
    }
    expect_eq(seen, MAX_TRANSACT_ITEMS, "items written")
}

async fn seed_partition(table: &dyn ItemTable, pk: &str, sort_keys: &[&str]) -> CaseResult {
    for sk in sort_keys {
        table.put(Item::new(Key::new(pk, *sk)).with("sk_copy", AttrValue::S(sk.to_string())), Condition::Always).await.step("seed")?;
    }
    Ok(())
}

/// Every [`SkRange`] variant, forward and backward, returns exactly its items in order.
pub async fn query_ranges_and_directions(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("query_ranges_and_directions");
    let pk = ns.key("p");
    seed_partition(table, &pk, &["d", "b", "bb", "a", "c", "ba"]).await?;
    let cases: Vec<(SkRange, Vec<&str>)> = vec![
        (SkRange::All, vec!["a", "b", "ba", "bb", "c", "d"]),
        (SkRange::Prefix("b".into()), vec!["b", "ba", "bb"]),
        (SkRange::Prefix("ba".into()), vec!["ba"]),
        (SkRange::Prefix("e".into()), vec![]),
        (SkRange::Between("b".into(), "c".into()), vec!["b", "ba", "bb", "c"]),
        (SkRange::Between("b0".into(), "bz".into()), vec!["ba", "bb"]),
        (SkRange::Between("c".into(), "c".into()), vec!["c"]),
        (SkRange::AtLeast("bb".into()), vec!["bb", "c", "d"]),
        (SkRange::AtLeast("e".into()), vec![]),
        (SkRange::AtMost("ba".into()), vec!["a", "b", "ba"]),
        (SkRange::AtMost("0".into()), vec![]),
    ];
    for (range, expected) in cases {
        let forward = table.query(&Query::partition(&pk, 100).range(range.clone())).await.step(&format!("forward {range:?}"))?;
        expect_eq(sort_keys(&forward), expected.clone(), &format!("forward {range:?}"))?;
        expect_eq(forward.last_evaluated.clone(), None, &format!("last_evaluated of forward {range:?}"))?;
        let backward =
            table.query(&Query::partition(&pk, 100).range(range.clone()).backward()).await.step(&format!("backward {range:?}"))?;
        let reversed: Vec<&str> = expected.iter().rev().copied().collect();
        expect_eq(sort_keys(&backward), reversed, &format!("backward {range:?}"))?;
        expect_eq(backward.last_evaluated.clone(), None, &format!("last_evaluated of backward {range:?}"))?;
    }
    let all = table.query(&Query::partition(&pk, 100)).await.step("query all")?;
    let attrs_ok = all.items.iter().all(|item| item.get_str("sk_copy") == Some(item.key.sk.as_str()) && item.key.pk == pk);
    expect(attrs_ok, "query returned items whose key or attributes do not match what was stored")?;
    let missing = table.query(&Query::partition(ns.key("missing"), 10)).await.step("query missing partition")?;
    expect_eq(missing, QueryPage::default(), "page of a missing partition")
}

/// `start_after` continues strictly after (forward) or before (backward) the given sort key.
pub async fn query_start_after(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("query_start_after");
    let pk = ns.key("p");
    seed_partition(table, &pk, &["a", "b", "ba", "bb", "c", "d"]).await?;
    let cases: Vec<(SkRange, bool, &str, Vec<&str>)> = vec![
        (SkRange::All, true, "b", vec!["ba", "bb", "c", "d"]),
        (SkRange::All, false, "c", vec!["bb", "ba", "b", "a"]),
        (SkRange::All, true, "bab", vec!["bb", "c", "d"]),
        (SkRange::All, true, "d", vec![]),
        (SkRange::All, false, "a", vec![]),
        (SkRange::Prefix("b".into()), true, "b", vec!["ba", "bb"]),
        (SkRange::Prefix("b".into()), false, "bb", vec!["ba", "b"]),
        (SkRange::Between("a".into(), "c".into()), true, "ba", vec!["bb", "c"]),
        (SkRange::Between("a".into(), "c".into()), false, "ba", vec!["b", "a"]),
        (SkRange::AtLeast("b".into()), false, "c", vec!["bb", "ba", "b"]),
        (SkRange::AtMost("c".into()), true, "bb", vec!["c"]),
    ];
    for (range, forward, after, expected) in cases {
        let mut query = Query::partition(&pk, 100).range(range.clone()).after(Some(after.to_string()));
        query.forward = forward;
        let what = format!("{range:?} forward={forward} start_after={after:?}");
        let page = table.query(&query).await.step(&what)?;
        expect_eq(sort_keys(&page), expected, &what)?;
    }
    Ok(())
}

/// Paging with `limit` and `last_evaluated` returns every item exactly once, in order, in
/// both directions, and no page is larger than the limit.
pub async fn query_pages_cover_every_item_once(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("query_pages_cover_every_item_once");
    let pk = ns.key("p");
    let writes: Vec<Write> = (0..25)
        .map(|i| Write::Put { item: Item::new(Key::new(&pk, format!("s{i:03}"))).with("i", AttrValue::N(i)), condition: Condition::Always })
        .collect();
    table.transact_write(writes).await.step("seed")?;
    table.put(Item::new(Key::new(&pk, "t000")), Condition::Always).await.step("seed outside prefix")?;
    let all: Vec<String> = (0..25).map(|i| format!("s{i:03}")).collect();
    for (limit, forward) in [(1, true), (4, true), (5, false), (7, false), (25, true), (25, false)] {
        let mut query = Query::partition(&pk, limit).range(SkRange::Prefix("s".into()));
        query.forward = forward;
        let what = format!("paging limit={limit} forward={forward}");
        let mut seen = Vec::new();
        for _ in 0..=all.len() + 1 {
            let page = table.query(&query).await.step(&what)?;
            expect(page.items.len() <= limit, format!("{what}: page of {} items exceeds the limit", page.items.len()))?;
            seen.extend(page.items.iter().map(|item| item.key.sk.clone()));
            match page.last_evaluated {
                Some(last) => {
                    expect(page.items.last().map(|i| &i.key.sk) == Some(&last), format!("{what}: last_evaluated is not the last item"))?;
                    query.start_after = Some(last);
                }
                None => break,
            }
        }
        let mut expected = all.clone();
        if !forward {
            expected.reverse();
        }
        expect_eq(seen, expected, &what)?;
    }
    Ok(())
}

/// A query returns only items of its own partition, even when another partition key
/// extends it (`a` vs `ab`, `a` vs `a#`).
pub async fn query_never_leaks_other_partitions(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("query_never_leaks_other_partitions");
    let (a, ab, a_hash, a_sep) = (ns.key("a"), ns.key("ab"), ns.key("a#"), ns.key("a\u{1}"));
    for pk in [&a, &ab, &a_hash, &a_sep] {
        seed_partition(table, pk, &["1", "2", "b", "b1"]).await?;
    }
    // A prefix of the sort key that, glued to the partition key, would spell another partition.
    table.put(Item::new(Key::new(&ab, "x")), Condition::Always).await.step("seed x")?;
    for pk in [&a, &ab, &a_hash, &a_sep] {
        for range in [SkRange::All, SkRange::Prefix("b".into()), SkRange::AtLeast("0".into()), SkRange::AtMost("zzz".into())] {
            for forward in [true, false] {
                let mut query = Query::partition(pk.as_str(), 100).range(range.clone());
                query.forward = forward;
                let page = table.query(&query).await.step("query")?;
                let foreign = page.items.iter().filter(|item| &item.key.pk != pk).count();
                expect_eq(foreign, 0, &format!("items of other partitions in {pk:?} {range:?} forward={forward}"))?;
            }
        }
    }
    let page = table.query(&Query::partition(&a, 100)).await.step("query a")?;
    expect_eq(sort_keys(&page), vec!["1", "2", "b", "b1"], "partition a")
}

/// A zero limit and an inverted `Between` are `Invalid` (DynamoDB rejects both).
pub async fn query_rejects_bad_requests(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("query_rejects_bad_requests");
    let pk = ns.key("p");
    seed_partition(table, &pk, &["a"]).await?;
    expect_kind(table.query(&Query::partition(&pk, 0)).await, StorageErrorKind::Invalid, "limit 0")?;
    let inverted = Query::partition(&pk, 10).range(SkRange::Between("b".into(), "a".into()));
    expect_kind(table.query(&inverted).await, StorageErrorKind::Invalid, "between with lower bound above upper bound")
}

/// Sort keys are ordered by their UTF-8 bytes (`B` < `a` < `é` < `😀`).
pub async fn sort_keys_compare_bytewise(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("sort_keys_compare_bytewise");
    let pk = ns.key("p");
    let mut expected = vec!["a", "B", "é", "😀", "a\u{7f}", "a b", "2024-01-01T00:00:00Z", "2024-01-01", "~", "Z"];
    seed_partition(table, &pk, &expected).await?;
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    let forward = table.query(&Query::partition(&pk, 100)).await.step("forward")?;
    expect_eq(sort_keys(&forward), expected.clone(), "forward order")?;
    let backward = table.query(&Query::partition(&pk, 100).backward()).await.step("backward")?;
    expected.reverse();
    expect_eq(sort_keys(&backward), expected, "backward order")
}

/// `batch_get` returns exactly the existing items among its keys, across partitions and
/// beyond one DynamoDB batch (100 keys).
pub async fn batch_get_returns_existing_items(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("batch_get_returns_existing_items");
    expect_eq(table.batch_get(&[]).await.step("empty batch")?, Vec::new(), "empty batch")?;
    let mut keys = Vec::new();
    let mut expected = BTreeSet::new();
    for i in 0..110 {
        let key = Key::new(ns.key(&format!("p{}", i % 3)), format!("s{i:03}"));
        if i % 2 == 0 {
            table.put(item(&key, i), Condition::Always).await.step("seed")?;
            expected.insert((key.clone(), i));
        }
        keys.push(key);
    }
    let found = table.batch_get(&keys).await.step("batch get")?;
    let found: BTreeSet<(Key, i64)> = found.iter().map(|item| (item.key.clone(), item.get_i64("version").unwrap_or(-1))).collect();
    expect_eq(found.len(), expected.len(), "number of items found")?;
    expect_eq(found, expected, "items found")
}

/// `batch_write` applies any number of unconditional puts (replacing) and deletes (of present
/// and missing items), across partitions.
pub async fn batch_write_puts_and_deletes(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("batch_write_puts_and_deletes");
    table.batch_write(Vec::new()).await.step("empty batch")?;
    let keys: Vec<Key> = (0..60).map(|i| Key::new(ns.key(&format!("p{}", i % 4)), format!("s{i:03}"))).collect();
    for key in keys.iter().step_by(3) {
        table.put(item(key, -1), Condition::Always).await.step("seed")?;
    }
    let writes =
        keys.iter()
            .enumerate()
            .map(|(i, key)| if i % 5 == 0 { BatchWrite::Delete(key.clone()) } else { BatchWrite::Put(item(key, i as i64)) });
    table.batch_write(writes.collect()).await.step("batch of 60")?;
    let found = table.batch_get(&keys).await.step("batch get")?;
    let found: BTreeSet<(Key, i64)> = found.iter().map(|item| (item.key.clone(), item.get_i64("version").unwrap_or(-2))).collect();
    let expected: BTreeSet<(Key, i64)> =
        keys.iter().enumerate().filter(|(i, _)| i % 5 != 0).map(|(i, key)| (key.clone(), i as i64)).collect();
    expect_eq(found, expected, "items after the batch")
}

/// A batch touching one key twice, or holding an oversized item, is refused before anything
/// is written.
pub async fn batch_write_rejects_malformed_batches(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("batch_write_rejects_malformed_batches");
    let key = Key::new(ns.key("p"), "a");
    let other = Key::new(ns.key("p"), "b");
    let twice = vec![BatchWrite::Put(item(&other, 1)), BatchWrite::Put(item(&key, 1)), BatchWrite::Delete(key.clone())];
    expect_kind(table.batch_write(twice).await, StorageErrorKind::Invalid, "a key twice")?;
    let big = blob_item(&Key::new(ns.key("p"), "big"), 400 * 1024);
    expect_kind(
        table.batch_write(vec![BatchWrite::Put(item(&other, 1)), BatchWrite::Put(big)]).await,
        StorageErrorKind::TooLarge,
        "an oversized item",
    )?;
    expect_eq(table.get(&other).await.step("get")?, None, "item of a refused batch")
}

/// `write_each` applies every put and delete with its own condition: a failed condition or a
/// refused write does not stop the others, and each outcome is reported in order, also for more
/// writes than one storage commit groups.
pub async fn write_each_applies_each_write_alone(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("write_each_applies_each_write_alone");
    let taken = Key::new(ns.key("p"), "taken");
    let doomed = Key::new(ns.key("p"), "doomed");
    table.put(item(&taken, 1), Condition::Always).await.step("seed taken")?;
    table.put(item(&doomed, 1), Condition::Always).await.step("seed doomed")?;
    let fresh: Vec<Key> = (0..300).map(|i| Key::new(ns.key("q"), format!("s{i:03}"))).collect();
    let mut writes = vec![
        Write::Put { item: item(&taken, 2), condition: Condition::NotExists },
        Write::Delete { key: doomed.clone(), condition: Condition::Equals("version".into(), AttrValue::N(1)) },
        Write::Check { key: taken.clone(), condition: Condition::Exists },
        Write::Put { item: blob_item(&Key::new(ns.key("p"), "big"), 400 * 1024), condition: Condition::Always },
    ];
    writes.extend(fresh.iter().map(|key| Write::Put { item: item(key, 7), condition: Condition::NotExists }));
    let outcomes = table.write_each(writes).await;
    expect_eq(outcomes.len(), 304, "one outcome per write")?;
    expect_eq(outcomes[0].as_ref().err().map(StorageError::is_condition_failure), Some(true), "a put on a taken key")?;
    expect_eq(outcomes[1].is_ok(), true, "a conditional delete")?;
    expect_eq(outcomes[2].as_ref().err().map(|e| e.kind.clone()), Some(StorageErrorKind::Invalid), "a check")?;
    expect_eq(outcomes[3].as_ref().err().map(|e| e.kind.clone()), Some(StorageErrorKind::TooLarge), "an oversized item")?;
    expect_eq(outcomes[4..].iter().filter(|o| o.is_ok()).count(), 300, "the fresh puts")?;
    expect_eq(version_of(&table.get(&taken).await.step("get taken")?), Some(1), "the taken item")?;
    expect_eq(table.get(&doomed).await.step("get doomed")?, None, "the deleted item")?;
    expect_eq(table.batch_get(&fresh).await.step("batch get")?.len(), 300, "fresh items stored")
}

fn blob_item(key: &Key, len: usize) -> Item {
    Item::new(key.clone()).with("blob", AttrValue::B(vec![0x5a; len]))
}

/// Items over 400 KB (by [`Item::size`]) are `TooLarge`, through `put` and `transact_write`;
/// smaller large items round-trip.
pub async fn item_size_limit(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("item_size_limit");
    let key = Key::new(ns.key("p"), "big");
    let big = blob_item(&key, 300 * 1024);
    table.put(big.clone(), Condition::Always).await.step("put 300 kb item")?;
    expect_eq(table.get(&key).await.step("get 300 kb item")?, Some(big), "300 kb item")?;
    let too_big = blob_item(&Key::new(ns.key("p"), "too-big"), 400 * 1024);
    expect(too_big.size() > 400 * 1024, "test item is not over the limit")?;
    expect_kind(table.put(too_big.clone(), Condition::Always).await, StorageErrorKind::TooLarge, "put 400 kb blob")?;
    let writes = vec![
        Write::Put { item: item(&Key::new(ns.key("p"), "small"), 1), condition: Condition::Always },
        Write::Put { item: too_big.clone(), condition: Condition::Always },
    ];
    expect_kind(table.transact_write(writes).await, StorageErrorKind::TooLarge, "transaction with a 400 kb blob")?;
    expect_eq(table.get(&too_big.key).await.step("get")?, None, "oversized item")?;
    expect_eq(table.get(&Key::new(ns.key("p"), "small")).await.step("get")?, None, "small item of the rejected transaction")
}

/// A transaction over 4 MB in total is `TooLarge` and writes nothing.
pub async fn transaction_size_limit(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("transaction_size_limit");
    let writes: Vec<Write> = (0..11)
        .map(|i| Write::Put { item: blob_item(&Key::new(ns.key("p"), format!("{i:02}")), 390 * 1024), condition: Condition::Always })
        .collect();
    expect_kind(table.transact_write(writes).await, StorageErrorKind::TooLarge, "11 items of 390 kb")?;
    let page = table.query(&Query::partition(ns.key("p"), 100)).await.step("query")?;
    expect_eq(page.items.len(), 0, "items of the rejected transaction")
}

/// Every attribute type round-trips exactly, through `get`, `query` and `batch_get`.
pub async fn attribute_types_round_trip(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("attribute_types_round_trip");
    let key = Key::new(ns.key("p"), "types");
    let all_bytes: Vec<u8> = (0..=255).collect();
    let written = Item::new(key.clone())
        .with("s", AttrValue::S("héllo \"wörld\" \n\t 😀".into()))
        .with("s_empty", AttrValue::S(String::new()))
        .with("n_zero", AttrValue::N(0))
        .with("n_neg", AttrValue::N(-42))
        .with("n_min", AttrValue::N(i64::MIN))
        .with("n_max", AttrValue::N(i64::MAX))
        .with("b", AttrValue::B(all_bytes))
        .with("b_empty", AttrValue::B(Vec::new()))
        .with("t", AttrValue::Bool(true))
        .with("f", AttrValue::Bool(false))
        .with("name with spaces and ü", AttrValue::N(1));
    table.put(written.clone(), Condition::Always).await.step("put")?;
    expect_eq(table.get(&key).await.step("get")?, Some(written.clone()), "item read by get")?;
    let page = table.query(&Query::partition(ns.key("p"), 10)).await.step("query")?;
    expect_eq(page.items, vec![written.clone()], "items read by query")?;
    let batch = table.batch_get(std::slice::from_ref(&key)).await.step("batch get")?;
    expect_eq(batch, vec![written.clone()], "items read by batch get")?;
    let empty = Item::new(Key::new(ns.key("p"), "no-attrs"));
    table.put(empty.clone(), Condition::Always).await.step("put item without attributes")?;
    expect_eq(table.get(&empty.key).await.step("get item without attributes")?, Some(empty), "item without attributes")
}

/// Empty or oversized key parts are `Invalid` (DynamoDB: 2048-byte pk, 1024-byte sk).
pub async fn keys_are_validated(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("keys_are_validated");
    let bad = [
        Key::new("", "sk"),
        Key::new(ns.key("p"), ""),
        Key::new(ns.key("p"), "s".repeat(1025)),
        Key::new(format!("{}{}", ns.key("p"), "p".repeat(2048)), "sk"),
    ];
    for key in &bad {
        let what = format!("key with pk of {} bytes and sk of {} bytes", key.pk.len(), key.sk.len());
        expect_kind(table.put(item(key, 1), Condition::Always).await, StorageErrorKind::Invalid, &format!("put {what}"))?;
        expect_kind(table.get(key).await, StorageErrorKind::Invalid, &format!("get {what}"))?;
    }
    expect_kind(table.query(&Query::partition("", 10)).await, StorageErrorKind::Invalid, "query of an empty partition key")?;
    let longest = Key::new(ns.key("p"), "s".repeat(1024));
    table.put(item(&longest, 1), Condition::Always).await.step("put 1024-byte sort key")?;
    expect_eq(stored_version(table, &longest, "get").await?, Some(1), "item with a 1024-byte sort key")
}

const WRITERS: i64 = 8;
const WRITES_PER_WRITER: i64 = 50;

/// Concurrent read-modify-write loops guarded by `Equals(version)` lose no update.
pub async fn concurrent_conditional_writers(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("concurrent_conditional_writers");
    let key = Key::new(ns.key("p"), "counter");
    table.put(item(&key, 0), Condition::NotExists).await.step("seed")?;
    let writer = |writer: i64| {
        let key = key.clone();
        async move {
            let mut successes = 0i64;
            let mut attempts = 0;
            while successes < WRITES_PER_WRITER {
                attempts += 1;
                if attempts > WRITES_PER_WRITER * WRITERS * 20 {
                    return Err(format!("writer {writer} gave up after {attempts} attempts"));
                }
                let current = stored_version(table, &key, "read").await?.ok_or("counter vanished")?;
                tokio::task::yield_now().await;
                let next = item(&key, current + 1).with("writer", AttrValue::N(writer));
                match table.put(next, Condition::Equals("version".into(), AttrValue::N(current))).await {
                    Ok(()) => successes += 1,
                    Err(error) if error.kind == StorageErrorKind::ConditionFailed => {}
                    Err(error) => return Err(format!("writer {writer}: unexpected error {error}")),
                }
            }
            Ok(successes)
        }
    };
    let results = join_all((0..WRITERS).map(writer).collect()).await;
    let mut total = 0;
    for result in results {
        total += result?;
    }
    expect_eq(stored_version(table, &key, "final read").await?, Some(total), "final version against successful writes")?;
    expect_eq(total, WRITERS * WRITES_PER_WRITER, "successful writes")
}

/// Of concurrent creates of one key (`NotExists`), exactly one wins.
pub async fn concurrent_creates_have_one_winner(table: &dyn ItemTable) -> CaseResult {
    let ns = Namespace::new("concurrent_creates_have_one_winner");
    for round in 0..5 {
        let key = Key::new(ns.key("p"), format!("item{round}"));
        let creators = (0..WRITERS).map(|writer| {
            let key = key.clone();
            async move {
                let writes = vec![Write::Put { item: item(&key, writer), condition: Condition::NotExists }];
                if writer % 2 == 0 {
                    table.transact_write(writes).await
                } else {
                    table.put(item(&key, writer), Condition::NotExists).await
                }
            }
        });
        let results = join_all(creators.collect()).await;
        let mut winners = Vec::new();
        for (writer, result) in results.into_iter().enumerate() {
            match result {
                Ok(()) => winners.push(writer as i64),
                Err(error) if error.is_condition_failure() => {}
                Err(error) => return Err(format!("creator {writer}: unexpected error {error}")),
            }
        }
        expect_eq(winners.len(), 1, &format!("round {round}: number of winners"))?;
        expect_eq(stored_version(table, &key, "read").await?, winners.first().copied(), &format!("round {round}: stored winner"))?;
    }
    Ok(())
}
