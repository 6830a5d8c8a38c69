//! Helpers shared by the projection's integration tests and its benchmark: reading projection
//! files back, building stream images of items.

#![allow(dead_code)]

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fhirlake_core::datastores::{ActiveDatastore, CreateFhirDatastoreRequest};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{AttrValue, Item, ObjectStore, RandomIds};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

/// One projection file, decoded.
pub struct ProjectionFile {
    pub batch: RecordBatch,
}

impl ProjectionFile {
    /// Decodes a projection file (one row group, as the projector writes them).
    pub fn read(bytes: Bytes) -> ProjectionFile {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("a parquet file").build().expect("a reader");
        let batches: Vec<RecordBatch> = reader.map(|b| b.expect("a record batch")).collect();
        assert_eq!(batches.len(), 1, "one record batch per file");
        ProjectionFile { batch: batches.into_iter().next().expect("a batch") }
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn ids(&self) -> Vec<String> {
        let column = self.batch.column_by_name("id").expect("id").as_string::<i32>();
        (0..column.len()).map(|i| column.value(i).to_string()).collect()
    }

    pub fn versions(&self) -> Vec<i64> {
        self.batch.column_by_name("version_id").expect("version_id").as_primitive::<Int64Type>().values().to_vec()
    }

    pub fn last_updated_micros(&self) -> Vec<i64> {
        self.batch.column_by_name("last_updated").expect("last_updated").as_primitive::<TimestampMicrosecondType>().values().to_vec()
    }

    pub fn deleted(&self) -> Vec<bool> {
        let column = self.batch.column_by_name("deleted").expect("deleted").as_boolean();
        (0..column.len()).map(|i| column.value(i)).collect()
    }

    pub fn resources(&self) -> Vec<Option<serde_json::Value>> {
        let column = self.batch.column_by_name("resource").expect("resource").as_string::<i32>();
        (0..column.len()).map(|i| (!column.is_null(i)).then(|| serde_json::from_str(column.value(i)).expect("resource json"))).collect()
    }

    /// A parameter column: per row, its values or `None`.
    pub fn list(&self, name: &str) -> Vec<Option<Vec<String>>> {
        let column = self.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_list::<i32>();
        (0..column.len())
            .map(|i| {
                (!column.is_null(i)).then(|| {
                    let values = column.value(i);
                    let values = values.as_string::<i32>();
                    (0..values.len()).map(|j| values.value(j).to_string()).collect()
                })
            })
            .collect()
    }
}

/// `Some(vec![...])` of owned strings.
pub fn some(values: &[&str]) -> Option<Vec<String>> {
    Some(values.iter().map(|v| v.to_string()).collect())
}

/// Every key under `prefix`.
pub async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), 1000).await.expect("list");
        keys.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => return keys,
        }
    }
}

/// The DynamoDB JSON image of an item, as DynamoDB Streams delivers it to Lambda.
pub fn image(item: &Item) -> Value {
    let mut image = serde_json::Map::new();
    image.insert("pk".into(), json!({"S": item.key.pk}));
    image.insert("sk".into(), json!({"S": item.key.sk}));
    for (name, value) in &item.attrs {
        let value = match value {
            AttrValue::S(s) => json!({ "S": s }),
            AttrValue::N(n) => json!({ "N": n.to_string() }),
            AttrValue::B(b) => json!({ "B": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b) }),
            AttrValue::Bool(b) => json!({ "BOOL": b }),
        };
        image.insert(name.clone(), value);
    }
    Value::Object(image)
}

/// 2024-05-01T12:00:00Z, the fixtures' clock start.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).expect("2024-05-01T12:00:00Z")
}

/// Services over the memory adapters with a fixed clock, and one active datastore.
pub struct Fixture {
    pub services: Services,
    pub backends: Backends,
    pub table: Arc<MemoryItemTable>,
    pub clock: Arc<FixedClock>,
    pub ds: ActiveDatastore,
}

/// A fresh [`Fixture`].
pub async fn fixture() -> Fixture {
    let table = Arc::new(MemoryItemTable::new());
    let clock = Arc::new(FixedClock::new(t0()));
    let backends = Backends {
        table: table.clone(),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: clock.clone(),
        ids: Arc::new(RandomIds),
    };
    let services = Services::new(config(), backends.clone());
    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("create datastore");
    let ds = services.datastores.active(&created.datastore_id).await.expect("datastore active");
    Fixture { services, backends, table, clock, ds }
}

/// The services' settings in the fixtures.
pub fn config() -> ServiceConfig {
    ServiceConfig::new("us-east-1", "123456789012", "http://localhost")
}
