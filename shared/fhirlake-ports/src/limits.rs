//! DynamoDB's limits, enforced by every item-table adapter so code that works locally or in
//! tests also fits in DynamoDB.

use std::collections::{BTreeSet, HashSet};

use crate::{BatchWrite, Item, Key, Query, SkRange, StorageError, StorageErrorKind, StorageResult, Write, MAX_TRANSACT_ITEMS};

/// The item size limit (400 KB), measured with [`Item::size`].
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The limit on the total size of one transaction (4 MB).
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// The limit on a partition key value, in bytes.
pub const MAX_PK_BYTES: usize = 2048;
/// The limit on a sort key value, in bytes.
pub const MAX_SK_BYTES: usize = 1024;
/// A query page stops once it holds this many bytes of items.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// Both key parts are non-empty and within their size limits.
pub fn validate_key(key: &Key) -> StorageResult<()> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StorageError::invalid("key attributes must not be empty"));
    }
    if key.pk.len() > MAX_PK_BYTES || key.sk.len() > MAX_SK_BYTES {
        return Err(StorageError::invalid("key attribute exceeds its size limit"));
    }
    Ok(())
}

/// The key is valid and the item within the item size limit.
pub fn validate_item(item: &Item) -> StorageResult<()> {
    validate_key(&item.key)?;
    if item.size() > MAX_ITEM_BYTES {
        return Err(StorageError::new(StorageErrorKind::TooLarge, "item exceeds the 400 kb item size limit"));
    }
    Ok(())
}

/// 1 to 100 actions on distinct, valid keys, within the transaction size limit.
pub fn validate_transaction(writes: &[Write]) -> StorageResult<()> {
    if writes.is_empty() {
        return Err(StorageError::invalid("a transaction needs at least one action"));
    }
    if writes.len() > MAX_TRANSACT_ITEMS {
        return Err(StorageError::invalid(format!("a transaction takes at most {MAX_TRANSACT_ITEMS} actions")));
    }
    let mut keys = BTreeSet::new();
    let mut total = 0usize;
    for write in writes {
        match write {
            Write::Put { item, .. } => {
                validate_item(item)?;
                total += item.size();
            }
            Write::Delete { key, .. } | Write::Check { key, .. } => {
                validate_key(key)?;
                total += key.pk.len() + key.sk.len();
            }
        }
        if !keys.insert(write.key()) {
            return Err(StorageError::invalid("a transaction cannot touch one item twice"));
        }
    }
    if total > MAX_TRANSACTION_BYTES {
        return Err(StorageError::new(StorageErrorKind::TooLarge, "transaction exceeds the 4 mb size limit"));
    }
    Ok(())
}

/// Valid keys, each at most once, and items within the item size limit.
pub fn validate_batch(writes: &[BatchWrite]) -> StorageResult<()> {
    let mut keys = HashSet::with_capacity(writes.len());
    for write in writes {
        match write {
            BatchWrite::Put(item) => validate_item(item)?,
            BatchWrite::Delete(key) => validate_key(key)?,
        }
        if !keys.insert(write.key()) {
            return Err(StorageError::invalid("a batch cannot touch one item twice"));
        }
    }
    Ok(())
}

/// A non-empty partition key within its limit, a limit of at least 1, and an ordered `Between`.
pub fn validate_query(query: &Query) -> StorageResult<()> {
    if query.pk.is_empty() || query.pk.len() > MAX_PK_BYTES {
        return Err(StorageError::invalid("query partition key must be 1 to 2048 bytes"));
    }
    if query.limit == 0 {
        return Err(StorageError::invalid("query limit must be at least 1"));
    }
    if let SkRange::Between(lo, hi) = &query.range {
        if lo > hi {
            return Err(StorageError::invalid("between needs a lower bound not above its upper bound"));
        }
    }
    Ok(())
}
