//! [`ItemTable`] on one DynamoDB table with string `pk` (hash) and `sk` (range) keys.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest, KeySchemaElement, KeyType, KeysAndAttributes,
    Put, PutRequest, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use fhirlake_ports::limits::{validate_batch, validate_item, validate_key, validate_query, validate_transaction, MAX_PAGE_BYTES};
use fhirlake_ports::{
    BatchWrite, Condition, Item, ItemTable, Key, Query, QueryPage, SkRange, StorageError, StorageErrorKind, StorageResult, Write,
};

use crate::dynamodb_attrs::{condition_expr, item_from_map, item_map, key_map, AttrMap, PK, SK};
use crate::error::{sdk_error, service_code, Backoff};

/// DynamoDB's limit on keys in one `BatchGetItem` request.
const BATCH_GET_KEYS: usize = 100;
/// DynamoDB's limit on writes in one `BatchWriteItem` request.
const BATCH_WRITE_ITEMS: usize = 25;
/// Retries of unprocessed batch keys and of transactions cancelled by conflicts or throttling.
const RETRIES: u32 = 8;

/// Transaction cancellation reasons (and error codes) that a retry may clear.
const RETRYABLE_CANCELLATIONS: &[&str] =
    &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded", "TransactionConflictException"];

/// Single-item requests `write_each` keeps in flight.
const WRITE_EACH_CONCURRENCY: usize = 16;

/// Stores the outcome of one of `write_each`'s requests at its index.
fn store_outcome(outcomes: &mut [Option<StorageResult<()>>], joined: Option<Result<(usize, StorageResult<()>), tokio::task::JoinError>>) {
    if let Some(Ok((index, outcome))) = joined {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
    }
}

/// The item table on DynamoDB. Reads are strongly consistent; conditions, transactions and
/// limits follow the [`ItemTable`] contract.
#[derive(Debug, Clone)]
pub struct DynamoDbItemTable {
    client: Client,
    table: String,
}

impl DynamoDbItemTable {
    /// The table `table_name` (keys `pk` and `sk`, both strings) through `client`.
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        DynamoDbItemTable { client, table: table_name.into() }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// One `TransactWriteItem` per write, and the write index of each (`Check`s of
    /// [`Condition::Always`] need no action and are left out).
    fn transact_items(&self, writes: &[Write]) -> StorageResult<(Vec<TransactWriteItem>, Vec<usize>)> {
        let mut items = Vec::with_capacity(writes.len());
        let mut positions = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let action = match write {
                Write::Put { item, condition } => {
                    let mut put = Put::builder().table_name(&self.table).set_item(Some(item_map(item)?));
                    if let Some(c) = condition_expr(condition) {
                        put = put
                            .condition_expression(c.expression)
                            .set_expression_attribute_names(Some(c.names))
                            .set_expression_attribute_values(c.values);
                    }
                    TransactWriteItem::builder().put(put.build().map_err(build_error)?).build()
                }
                Write::Delete { key, condition } => {
                    let mut delete = Delete::builder().table_name(&self.table).set_key(Some(key_map(key)));
                    if let Some(c) = condition_expr(condition) {
                        delete = delete
                            .condition_expression(c.expression)
                            .set_expression_attribute_names(Some(c.names))
                            .set_expression_attribute_values(c.values);
                    }
                    TransactWriteItem::builder().delete(delete.build().map_err(build_error)?).build()
                }
                Write::Check { key, condition } => {
                    let Some(c) = condition_expr(condition) else { continue };
                    let check = ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_map(key)))
                        .condition_expression(c.expression)
                        .set_expression_attribute_names(Some(c.names))
                        .set_expression_attribute_values(c.values);
                    TransactWriteItem::builder().condition_check(check.build().map_err(build_error)?).build()
                }
            };
            items.push(action);
            positions.push(index);
        }
        Ok((items, positions))
    }

    /// One `Query` request; returns the items and the sort key of `LastEvaluatedKey`.
    async fn query_once(
        &self,
        query: &Query,
        condition: &KeyCondition,
        start: Option<&str>,
        limit: usize,
    ) -> StorageResult<(Vec<Item>, Option<String>)> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression(&condition.expression)
            .set_expression_attribute_names(Some(condition.names.clone()))
            .set_expression_attribute_values(Some(condition.values.clone()))
            .scan_index_forward(query.forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.map(|sk| key_map(&Key::new(query.pk.as_str(), sk))));
        let output = request.send().await.map_err(|e| sdk_error("query", &e))?;
        let last = output.last_evaluated_key().and_then(|key| key.get(SK)).and_then(|sk| sk.as_s().ok()).cloned();
        let items = output.items.unwrap_or_default().into_iter().map(item_from_map).collect::<StorageResult<Vec<_>>>()?;
        Ok((items, last))
    }
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StorageError {
    StorageError::internal(format!("could not build a dynamodb request: {error}"))
}

/// Where a `start_after` sort key lies relative to a query's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Below,
    Inside,
    Above,
}

fn position(range: &SkRange, sk: &str) -> Position {
    if sk.is_empty() {
        // Every stored sort key is non-empty, hence above "".
        return Position::Below;
    }
    match range {
        SkRange::All => Position::Inside,
        SkRange::Prefix(prefix) if sk.starts_with(prefix.as_str()) => Position::Inside,
        SkRange::Prefix(prefix) if sk < prefix.as_str() => Position::Below,
        SkRange::Prefix(_) => Position::Above,
        SkRange::Between(lo, _) | SkRange::AtLeast(lo) if sk < lo.as_str() => Position::Below,
        SkRange::Between(_, hi) | SkRange::AtMost(hi) if sk > hi.as_str() => Position::Above,
        _ => Position::Inside,
    }
}

/// A key condition expression with its placeholders.
struct KeyCondition {
    expression: String,
    names: HashMap<String, String>,
    values: AttrMap,
}

/// The key condition of `query`, or `None` when the range selects nothing. Empty bounds, which
/// DynamoDB rejects in key conditions, are rewritten (every stored sort key is non-empty).
fn key_condition(query: &Query) -> Option<KeyCondition> {
    let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
    let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(query.pk.clone()))]);
    let mut value = |name: &str, v: &str| {
        values.insert(name.to_string(), AttributeValue::S(v.to_string()));
    };
    let sk_condition = match &query.range {
        SkRange::All => None,
        SkRange::Prefix(p) | SkRange::AtLeast(p) if p.is_empty() => None,
        SkRange::AtMost(hi) | SkRange::Between(_, hi) if hi.is_empty() => return None,
        SkRange::Between(lo, hi) if lo.is_empty() => {
            value(":hi", hi);
            Some("#sk <= :hi")
        }
        SkRange::Prefix(p) => {
            value(":p", p);
            Some("begins_with(#sk, :p)")
        }
        SkRange::Between(lo, hi) => {
            value(":lo", lo);
            value(":hi", hi);
            Some("#sk BETWEEN :lo AND :hi")
        }
        SkRange::AtLeast(lo) => {
            value(":lo", lo);
            Some("#sk >= :lo")
        }
        SkRange::AtMost(hi) => {
            value(":hi", hi);
            Some("#sk <= :hi")
        }
    };
    let expression = match sk_condition {
        Some(sk) => {
            names.insert("#sk".to_string(), SK.to_string());
            format!("#pk = :pk AND {sk}")
        }
        None => "#pk = :pk".to_string(),
    };
    Some(KeyCondition { expression, names, values })
}

#[async_trait]
impl ItemTable for DynamoDbItemTable {
    async fn get(&self, key: &Key) -> StorageResult<Option<Item>> {
        validate_key(key)?;
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("get item", &e))?;
        output.item.map(item_from_map).transpose()
    }

    async fn put(&self, item: Item, condition: Condition) -> StorageResult<()> {
        validate_item(&item)?;
        let map = item_map(&item)?;
        let mut backoff = Backoff::new(RETRIES);
        loop {
            let mut request = self.client.put_item().table_name(&self.table).set_item(Some(map.clone()));
            if let Some(c) = condition_expr(&condition) {
                request = request
                    .condition_expression(c.expression)
                    .set_expression_attribute_names(Some(c.names))
                    .set_expression_attribute_values(c.values);
            }
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(error) if service_code(&error) == Some("TransactionConflictException") && backoff.wait().await => {}
                Err(error) => return Err(sdk_error("put item", &error)),
            }
        }
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StorageResult<()> {
        validate_key(key)?;
        let mut backoff = Backoff::new(RETRIES);
        loop {
            let mut request = self.client.delete_item().table_name(&self.table).set_key(Some(key_map(key)));
            if let Some(c) = condition_expr(&condition) {
                request = request
                    .condition_expression(c.expression)
                    .set_expression_attribute_names(Some(c.names))
                    .set_expression_attribute_values(c.values);
            }
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(error) if service_code(&error) == Some("TransactionConflictException") && backoff.wait().await => {}
                Err(error) => return Err(sdk_error("delete item", &error)),
            }
        }
    }

    /// Single-item requests, [`WRITE_EACH_CONCURRENCY`] in flight.
    async fn write_each(&self, writes: Vec<Write>) -> Vec<StorageResult<()>> {
        let mut outcomes: Vec<Option<StorageResult<()>>> = writes.iter().map(|_| None).collect();
        let mut running = tokio::task::JoinSet::new();
        for (index, write) in writes.into_iter().enumerate() {
            while running.len() >= WRITE_EACH_CONCURRENCY {
                store_outcome(&mut outcomes, running.join_next().await);
            }
            let table = self.clone();
            running.spawn(async move {
                let outcome = match write {
                    Write::Put { item, condition } => table.put(item, condition).await,
                    Write::Delete { key, condition } => table.delete(&key, condition).await,
                    Write::Check { .. } => Err(StorageError::invalid("write_each takes puts and deletes")),
                };
                (index, outcome)
            });
        }
        while !running.is_empty() {
            store_outcome(&mut outcomes, running.join_next().await);
        }
        // A request task that panicked left no outcome: its write's fate is unknown.
        outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(StorageError::internal("a write task failed")))).collect()
    }

    async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()> {
        validate_transaction(&writes)?;
        let (items, positions) = self.transact_items(&writes)?;
        if items.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(RETRIES);
        loop {
            let error = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let retryable = match &error {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        let reasons = cancelled.cancellation_reasons();
                        let failed: Vec<usize> = reasons
                            .iter()
                            .enumerate()
                            .filter(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
                            .filter_map(|(index, _)| positions.get(index).copied())
                            .collect();
                        if !failed.is_empty() {
                            return Err(StorageError::new(
                                StorageErrorKind::TransactionCanceled(failed),
                                "transaction cancelled by failed conditions",
                            ));
                        }
                        if reasons.iter().any(|reason| reason.code() == Some("ValidationError")) {
                            return Err(StorageError::invalid("transaction cancelled: validation error"));
                        }
                        reasons.iter().any(|reason| reason.code().is_some_and(|code| RETRYABLE_CANCELLATIONS.contains(&code)))
                    }
                    TransactWriteItemsError::TransactionInProgressException(_) => true,
                    other => other.meta().code().is_some_and(|code| RETRYABLE_CANCELLATIONS.contains(&code)),
                },
                _ => false,
            };
            if !retryable {
                return Err(sdk_error("transact write items", &error));
            }
            if !backoff.wait().await {
                return Err(StorageError::new(StorageErrorKind::Throttled, "transaction kept conflicting or being throttled"));
            }
        }
    }

    /// `BatchWriteItem` in requests of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, writes: Vec<BatchWrite>) -> StorageResult<()> {
        validate_batch(&writes)?;
        for chunk in writes.chunks(BATCH_WRITE_ITEMS) {
            let mut pending = Vec::with_capacity(chunk.len());
            for write in chunk {
                pending.push(match write {
                    BatchWrite::Put(item) => WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item_map(item)?)).build().map_err(build_error)?)
                        .build(),
                    BatchWrite::Delete(key) => WriteRequest::builder()
                        .delete_request(DeleteRequest::builder().set_key(Some(key_map(key))).build().map_err(build_error)?)
                        .build(),
                });
            }
            let mut backoff = Backoff::new(RETRIES);
            while !pending.is_empty() {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("batch write item", &e))?;
                pending = output.unprocessed_items.unwrap_or_default().into_values().flatten().collect();
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(StorageError::new(StorageErrorKind::Throttled, "batch write kept returning unprocessed items"));
                }
            }
        }
        Ok(())
    }

    async fn query(&self, query: &Query) -> StorageResult<QueryPage> {
        validate_query(query)?;
        let Some(condition) = key_condition(query) else { return Ok(QueryPage::default()) };
        let mut start = None;
        if let Some(after) = &query.start_after {
            match (position(&query.range, after), query.forward) {
                (Position::Inside, _) => start = Some(after.clone()),
                (Position::Below, true) | (Position::Above, false) => {}
                (Position::Below, false) | (Position::Above, true) => return Ok(QueryPage::default()),
            }
        }
        // Emulators may not honour an ExclusiveStartKey naming no stored item, so items not
        // strictly after `start_after` (in query order) are dropped here too.
        let wanted = |sk: &str| match &query.start_after {
            None => true,
            Some(after) if query.forward => sk > after.as_str(),
            Some(after) => sk < after.as_str(),
        };
        let mut page = QueryPage::default();
        let mut bytes = 0usize;
        loop {
            let remaining = query.limit - page.items.len();
            let (items, last) = self.query_once(query, &condition, start.as_deref(), remaining).await?;
            let mut received = items.into_iter().filter(|item| wanted(&item.key.sk)).peekable();
            while let Some(item) = received.next() {
                bytes += item.size();
                page.items.push(item);
                if page.items.len() >= query.limit || bytes >= MAX_PAGE_BYTES {
                    if received.peek().is_some() || last.is_some() {
                        page.last_evaluated = page.items.last().map(|item| item.key.sk.clone());
                    }
                    return Ok(page);
                }
            }
            match last {
                Some(last) => start = Some(last),
                None => return Ok(page),
            }
        }
    }

    async fn batch_get(&self, keys: &[Key]) -> StorageResult<Vec<Item>> {
        for key in keys {
            validate_key(key)?;
        }
        let unique: Vec<&Key> = keys.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let mut found = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_KEYS) {
            let mut pending: Vec<AttrMap> = chunk.iter().map(|key| key_map(key)).collect();
            let mut backoff = Backoff::new(RETRIES);
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder().set_keys(Some(pending)).consistent_read(true).build().map_err(build_error)?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("batch get item", &e))?;
                let responses = output.responses.unwrap_or_default().into_values().flatten();
                for map in responses {
                    found.push(item_from_map(map)?);
                }
                pending = output.unprocessed_keys.unwrap_or_default().into_values().flat_map(|unprocessed| unprocessed.keys).collect();
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(StorageError::new(StorageErrorKind::Throttled, "batch get kept returning unprocessed keys"));
                }
            }
        }
        Ok(found)
    }
}

/// Creates the table `name` (string `pk`/`sk` keys, on-demand billing, a stream of new and old
/// images) unless it exists, and waits until it is active.
pub async fn create_table_if_missing(client: &Client, name: &str) -> StorageResult<()> {
    match client.describe_table().table_name(name).send().await {
        Ok(_) => return wait_until_active(client, name).await,
        Err(SdkError::ServiceError(service)) if matches!(service.err(), DescribeTableError::ResourceNotFoundException(_)) => {}
        Err(error) => return Err(sdk_error("describe table", &error)),
    }
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().map_err(build_error)
    };
    let key = |name: &str, key_type| KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_error);
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(stream)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error) if service_code(&error) == Some("ResourceInUseException") => {}
        Err(error) => return Err(sdk_error("create table", &error)),
    }
    wait_until_active(client, name).await
}

async fn wait_until_active(client: &Client, name: &str) -> StorageResult<()> {
    for _ in 0..120 {
        let output = client.describe_table().table_name(name).send().await.map_err(|e| sdk_error("describe table", &e))?;
        if output.table().and_then(|table| table.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StorageError::internal(format!("table {name} did not become active")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_relative_to_ranges() {
        let prefix = SkRange::Prefix("b".into());
        assert_eq!(position(&prefix, "a"), Position::Below);
        assert_eq!(position(&prefix, "b"), Position::Inside);
        assert_eq!(position(&prefix, "bzz"), Position::Inside);
        assert_eq!(position(&prefix, "c"), Position::Above);
        let between = SkRange::Between("b".into(), "d".into());
        assert_eq!(position(&between, "a"), Position::Below);
        assert_eq!(position(&between, "c"), Position::Inside);
        assert_eq!(position(&between, "da"), Position::Above);
        assert_eq!(position(&SkRange::AtLeast("m".into()), "a"), Position::Below);
        assert_eq!(position(&SkRange::AtMost("m".into()), "z"), Position::Above);
        assert_eq!(position(&SkRange::All, ""), Position::Below);
    }

    #[test]
    fn empty_bounds_are_rewritten() {
        let query = |range| Query::partition("p", 10).range(range);
        assert!(key_condition(&query(SkRange::AtMost(String::new()))).is_none());
        let all = key_condition(&query(SkRange::Prefix(String::new()))).expect("condition");
        assert_eq!(all.expression, "#pk = :pk");
        let below = key_condition(&query(SkRange::Between(String::new(), "x".into()))).expect("condition");
        assert_eq!(below.expression, "#pk = :pk AND #sk <= :hi");
    }
}
