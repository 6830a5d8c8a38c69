//! The keyed item table: DynamoDB's data model, narrowed to the calls fhirlake makes.

use async_trait::async_trait;

use crate::{StorageError, StorageResult};

/// DynamoDB's limit on actions in one `TransactWriteItems`; adapters reject larger transactions.
pub const MAX_TRANSACT_ITEMS: usize = 100;

/// An attribute value. Only the scalar types fhirlake stores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttrValue {
    /// A UTF-8 string.
    S(String),
    /// An integer number.
    N(i64),
    /// Opaque bytes (encrypted bodies, wrapped keys).
    B(Vec<u8>),
    /// A boolean.
    Bool(bool),
}

impl AttrValue {
    /// The string, if this is `S`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::S(s) => Some(s),
            _ => None,
        }
    }
    /// The number, if this is `N`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::N(n) => Some(*n),
            _ => None,
        }
    }
    /// The bytes, if this is `B`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            AttrValue::B(b) => Some(b),
            _ => None,
        }
    }
    /// The boolean, if this is `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// The primary key: partition key and sort key, both strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    /// Builds a key.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key { pk: pk.into(), sk: sk.into() }
    }
}

/// The non-key attributes of an item, in name order. A sorted vector rather than a map: items
/// have a handful of attributes, and a bulk import builds tens of millions of one-attribute
/// index entries, for which a map's node (over 600 bytes) cost more than the entry itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs(Vec<(String, AttrValue)>);

type AttrRef<'a> = (&'a String, &'a AttrValue);
/// The iterator of [`Attrs::iter`].
pub type AttrsIter<'a> = std::iter::Map<std::slice::Iter<'a, (String, AttrValue)>, fn(&(String, AttrValue)) -> AttrRef<'_>>;

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Sets an attribute; returns the value it replaces.
    pub fn insert(&mut self, name: String, value: AttrValue) -> Option<AttrValue> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// The attribute's value.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    /// The attribute's value, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut AttrValue> {
        self.position(name).ok().map(move |i| &mut self.0[i].1)
    }

    /// Removes an attribute; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.position(name).ok().map(|i| self.0.remove(i).1)
    }

    /// Whether the attribute is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The attributes in name order.
    pub fn iter(&self) -> AttrsIter<'_> {
        self.0.iter().map(|(name, value)| (name, value))
    }
}

impl FromIterator<(String, AttrValue)> for Attrs {
    /// Later values of a name replace earlier ones, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, AttrValue)>>(iter: I) -> Self {
        let mut attrs = Attrs::new();
        for (name, value) in iter {
            attrs.insert(name, value);
        }
        attrs
    }
}

impl<const N: usize> From<[(String, AttrValue); N]> for Attrs {
    fn from(pairs: [(String, AttrValue); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Attrs {
    type Item = (String, AttrValue);
    type IntoIter = std::vec::IntoIter<(String, AttrValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = AttrRef<'a>;
    type IntoIter = AttrsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An item: its key and its other attributes (`pk` and `sk` are not repeated in `attrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The primary key.
    pub key: Key,
    /// Non-key attributes.
    pub attrs: Attrs,
}

impl Item {
    /// An item with no attributes.
    pub fn new(key: Key) -> Self {
        Item { key, attrs: Attrs::new() }
    }
    /// Adds an attribute (builder style).
    pub fn with(mut self, name: &str, value: AttrValue) -> Self {
        self.attrs.insert(name.to_string(), value);
        self
    }
    /// Reads an attribute.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.get(name)
    }
    /// Reads a string attribute.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(AttrValue::as_str)
    }
    /// Reads a numeric attribute.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(AttrValue::as_i64)
    }
    /// Reads a binary attribute.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.get(name).and_then(AttrValue::as_bytes)
    }
    /// Reads a boolean attribute.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(AttrValue::as_bool)
    }
    /// The approximate stored size in bytes, computed as DynamoDB does (names plus values).
    pub fn size(&self) -> usize {
        let value_size = |v: &AttrValue| match v {
            AttrValue::S(s) => s.len(),
            AttrValue::N(_) => 21,
            AttrValue::B(b) => b.len(),
            AttrValue::Bool(_) => 1,
        };
        2 + self.key.pk.len() + 2 + self.key.sk.len() + self.attrs.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>()
    }
}

/// A condition on the current state of one item, checked atomically with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No condition.
    Always,
    /// The item must not exist.
    NotExists,
    /// The item must exist.
    Exists,
    /// The item must exist and its attribute must equal the value.
    Equals(String, AttrValue),
}

/// One action of a transactional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Put (create or replace) an item if the condition holds.
    Put {
        /// The full new item.
        item: Item,
        /// Checked against the item currently stored under the same key.
        condition: Condition,
    },
    /// Delete an item if the condition holds; deleting a missing item is not an error.
    Delete {
        /// The key to delete.
        key: Key,
        /// Checked against the current item.
        condition: Condition,
    },
    /// Only check a condition; write nothing.
    Check {
        /// The key to check.
        key: Key,
        /// The condition that must hold.
        condition: Condition,
    },
}

impl Write {
    /// The key this action touches.
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { item, .. } => &item.key,
            Write::Delete { key, .. } | Write::Check { key, .. } => key,
        }
    }
}

/// One unconditional action of [`ItemTable::batch_write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchWrite {
    /// Create or replace the item.
    Put(Item),
    /// Delete the item if it exists.
    Delete(Key),
}

impl BatchWrite {
    /// The key this action touches.
    pub fn key(&self) -> &Key {
        match self {
            BatchWrite::Put(item) => &item.key,
            BatchWrite::Delete(key) => key,
        }
    }
}

/// Which sort keys of a partition a query selects. Bounds are compared bytewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkRange {
    /// Every sort key.
    All,
    /// Sort keys that begin with the prefix.
    Prefix(String),
    /// Sort keys `lo <= sk <= hi`.
    Between(String, String),
    /// Sort keys `sk >= bound`.
    AtLeast(String),
    /// Sort keys `sk <= bound`.
    AtMost(String),
}

impl SkRange {
    /// True when `sk` falls in this range.
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            SkRange::All => true,
            SkRange::Prefix(p) => sk.starts_with(p.as_str()),
            SkRange::Between(lo, hi) => sk >= lo.as_str() && sk <= hi.as_str(),
            SkRange::AtLeast(lo) => sk >= lo.as_str(),
            SkRange::AtMost(hi) => sk <= hi.as_str(),
        }
    }
}

/// A query over one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The partition.
    pub pk: String,
    /// The sort-key range.
    pub range: SkRange,
    /// Ascending (`true`) or descending sort-key order.
    pub forward: bool,
    /// At most this many items per page (adapters may return fewer, never more).
    pub limit: usize,
    /// Continue after (forward) or before (backward) this sort key, exclusively.
    pub start_after: Option<String>,
}

impl Query {
    /// A forward query of the whole partition with `limit` items per page.
    pub fn partition(pk: impl Into<String>, limit: usize) -> Self {
        Query { pk: pk.into(), range: SkRange::All, forward: true, limit, start_after: None }
    }
    /// Restricts the sort-key range.
    pub fn range(mut self, range: SkRange) -> Self {
        self.range = range;
        self
    }
    /// Reverses the order.
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    /// Continues after this sort key.
    pub fn after(mut self, sk: Option<String>) -> Self {
        self.start_after = sk;
        self
    }
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryPage {
    /// Items in the requested order.
    pub items: Vec<Item>,
    /// When set, more items may follow: pass it as `start_after` to continue.
    pub last_evaluated: Option<String>,
}

/// A keyed item table with DynamoDB's semantics: single-item conditional writes,
/// all-or-nothing transactional writes, and ordered queries within a partition.
///
/// Reads are strongly consistent: a read that starts after a write returned sees it.
#[async_trait]
pub trait ItemTable: Send + Sync + 'static {
    /// Returns the item under `key`, or `None`.
    async fn get(&self, key: &Key) -> StorageResult<Option<Item>>;

    /// Stores `item`, replacing any item with the same key, if `condition` holds.
    ///
    /// Errors: `ConditionFailed` when it does not (nothing is written); `TooLarge` over the item limit.
    async fn put(&self, item: Item, condition: Condition) -> StorageResult<()>;

    /// Deletes the item under `key` if `condition` holds. Deleting a missing item with
    /// `Condition::Always` succeeds.
    async fn delete(&self, key: &Key, condition: Condition) -> StorageResult<()>;

    /// Applies every write or none. At most [`MAX_TRANSACT_ITEMS`] writes, each on a distinct key.
    ///
    /// Errors: `TransactionCanceled(indexes)` naming the writes whose condition failed;
    /// `Invalid` for an empty, oversized or duplicate-key transaction.
    async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()>;

    /// Applies unconditional puts and deletes, any number, each on a distinct key. Not atomic:
    /// when it fails, some writes may have been applied and others not (callers write only
    /// items whose visibility another, atomic write decides, so a retry is always safe).
    ///
    /// Errors: `Invalid` for a duplicate or invalid key; `TooLarge` for an item over the limit
    /// (both before anything is written).
    async fn batch_write(&self, writes: Vec<BatchWrite>) -> StorageResult<()> {
        crate::limits::validate_batch(&writes)?;
        for write in writes {
            match write {
                BatchWrite::Put(item) => self.put(item, Condition::Always).await?,
                BatchWrite::Delete(key) => self.delete(&key, Condition::Always).await?,
            }
        }
        Ok(())
    }

    /// Applies puts and deletes each on its own, with its own condition, exactly as [`Self::put`]
    /// and [`Self::delete`] would: not atomic together, and a write that fails does not stop the
    /// others. Returns each write's outcome, in order. Adapters apply many at once where they
    /// can (redb in shared commits, DynamoDB concurrently); this default applies them in turn.
    /// A [`Write::Check`] is refused with `Invalid`.
    async fn write_each(&self, writes: Vec<Write>) -> Vec<StorageResult<()>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            outcomes.push(match write {
                Write::Put { item, condition } => self.put(item, condition).await,
                Write::Delete { key, condition } => self.delete(&key, condition).await,
                Write::Check { .. } => Err(StorageError::invalid("write_each takes puts and deletes")),
            });
        }
        outcomes
    }

    /// Returns one page of the items of `query.pk` in `query.range`, in sort-key order.
    async fn query(&self, query: &Query) -> StorageResult<QueryPage>;

    /// Returns the items that exist among `keys`, in no particular order.
    async fn batch_get(&self, keys: &[Key]) -> StorageResult<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(item) = self.get(key).await? {
                found.push(item);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_keep_name_order_and_behave_like_a_map() {
        let mut attrs: Attrs = [("wt".to_string(), AttrValue::S("t".into())), ("v".to_string(), AttrValue::N(1))].into();
        assert_eq!(attrs.insert("body".into(), AttrValue::B(vec![1])), None);
        assert_eq!(attrs.insert("v".into(), AttrValue::N(2)), Some(AttrValue::N(1)));
        let names: Vec<&str> = attrs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["body", "v", "wt"]);
        assert_eq!(attrs.get("v"), Some(&AttrValue::N(2)));
        assert!(attrs.contains_key("wt") && !attrs.contains_key("x"));
        assert_eq!(attrs.remove("wt"), Some(AttrValue::S("t".into())));
        assert_eq!((attrs.len(), attrs.remove("wt")), (2, None));
        if let Some(AttrValue::N(n)) = attrs.get_mut("v") {
            *n = 3;
        }
        let later_wins: Attrs = [("a".to_string(), AttrValue::N(1)), ("a".to_string(), AttrValue::N(2))].into_iter().collect();
        assert_eq!(later_wins.get("a"), Some(&AttrValue::N(2)));
        assert_eq!(attrs.into_iter().collect::<Vec<_>>(), vec![("body".into(), AttrValue::B(vec![1])), ("v".into(), AttrValue::N(3))]);
    }
}
