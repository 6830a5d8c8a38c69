//! The projector's handler driven by the sample events in `events/stream-projector/`, over the
//! memory adapters. Bodies in the table are sealed, so each test writes real resources through
//! `Services` and substitutes the version items it reads back into the fixture event.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{Duration, NaiveDate};
use fhirlake_core::datastores::DatastoreIdRequest;
use fhirlake_core::{layout, Backends, Services};
use fhirlake_ports::memory::MemoryObjectStore;
use fhirlake_ports::{
    AttrValue, DataKey, Item, ItemTable, Key, KeyService, ObjectList, ObjectMeta, ObjectStore, StorageError, StorageErrorKind,
    StorageResult, Upload, UploadedPart,
};
use fhirlake_projection::{batch_id, projection_key, DynamoDbEvent, IgnoreReason, Projector, SkipReason, PROJECTIONS_PREFIX};
use serde_json::{json, Value};
use support::{config, fixture, image, keys, some, Fixture, ProjectionFile};
use zeroize::Zeroizing;

const BATCH: &str = include_str!("../../../events/stream-projector/batch.json");
const LARGE_BODY: &str = include_str!("../../../events/stream-projector/large-body.json");
/// The datastore id the fixtures are written with.
const FIXTURE_DATASTORE: &str = "7ad17b6c9d48056865a8800b86cc2797";

fn patient() -> Value {
    json!({
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male", "birthDate": "1974-12-25",
        "managingOrganization": {"reference": "Organization/1"}
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01T14:00:00+02:00",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// Writes what `batch.json` describes: Patient p1 (v1), Observation o1 (v1) a second later,
/// and the deletion of p1 (v2) a second after that.
async fn write_batch_resources(f: &Fixture) {
    let r = &f.services.resources;
    r.update(&f.ds, "Patient", "p1", patient(), None).await.expect("put patient");
    f.clock.advance(Duration::seconds(1));
    r.update(&f.ds, "Observation", "o1", observation(), None).await.expect("put observation");
    f.clock.advance(Duration::seconds(1));
    r.delete(&f.ds, "Patient", "p1", None).await.expect("delete patient");
}

/// The fixture with the test's datastore id, and the new image of every version item it names
/// replaced by the real item in the table (passed through `edit` first).
async fn event(fixture: &str, f: &Fixture, edit: impl Fn(&mut Item)) -> DynamoDbEvent {
    let mut json: Value = serde_json::from_str(&fixture.replace(FIXTURE_DATASTORE, &f.ds.id)).expect("fixture json");
    for record in json["Records"].as_array_mut().expect("Records") {
        let dynamodb = &mut record["dynamodb"];
        if dynamodb.get("NewImage").is_none() {
            continue;
        }
        let key = Key::new(
            dynamodb["Keys"]["pk"]["S"].as_str().expect("pk").to_string(),
            dynamodb["Keys"]["sk"]["S"].as_str().expect("sk").to_string(),
        );
        if layout::parse_version_key(&key).is_none() {
            continue;
        }
        let mut item =
            f.table.get(&key).await.expect("get").unwrap_or_else(|| panic!("the fixture names {key:?}, which the test did not write"));
        edit(&mut item);
        dynamodb["NewImage"] = image(&item);
    }
    serde_json::from_value(json).expect("a DynamoDB stream event")
}

fn record_batch_id(event: &DynamoDbEvent, index: usize) -> String {
    let record = &event.records[index];
    batch_id(record.change.sequence_number.as_deref().expect("a sequence number"), &record.event_id).expect("a batch id")
}

fn may_1() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 1).expect("a date")
}

#[tokio::test]
async fn a_batch_projects_versions_and_ignores_the_rest() {
    let f = fixture().await;
    write_batch_resources(&f).await;
    let event = event(BATCH, &f, |_| {}).await;
    let output = Arc::new(MemoryObjectStore::new());
    let projector = Projector::new(f.services.clone(), output.clone());

    let report = projector.project(&event).await.expect("projected");
    let patient_key = projection_key(&f.ds.id, "Patient", may_1(), &record_batch_id(&event, 0));
    let observation_key = projection_key(&f.ds.id, "Observation", may_1(), &record_batch_id(&event, 3));
    // The names docs/storage-layout.md shows for this fixture.
    assert!(patient_key.ends_with("/Patient/date=2024-05-01/0000000000000004000000000000000000000001-a9fad087bd03fa34.parquet"));
    assert!(observation_key.ends_with("/Observation/date=2024-05-01/0000000000000004000000000000000000000004-797b8adb03b49615.parquet"));
    assert_eq!(report.records, 7);
    assert_eq!(
        report.files.iter().map(|(k, n)| (k.as_str(), *n)).collect::<Vec<_>>(),
        [(observation_key.as_str(), 1), (patient_key.as_str(), 2)]
    );
    assert_eq!(report.ignored.get(&IgnoreReason::NotAVersion), Some(&3));
    assert_eq!(report.ignored.get(&IgnoreReason::Removed), Some(&1));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.retry_from, None);
    assert_eq!(keys(output.as_ref(), PROJECTIONS_PREFIX).await, [observation_key.clone(), patient_key.clone()]);

    let patients = ProjectionFile::read(output.get(&patient_key).await.expect("patient file"));
    assert_eq!(patients.ids(), ["p1", "p1"]);
    assert_eq!(patients.versions(), [1, 2]);
    assert_eq!(patients.deleted(), [false, true]);
    assert_eq!(patients.last_updated_micros(), [1_714_564_800_000_000, 1_714_564_802_000_000]);
    let resources = patients.resources();
    let first = resources[0].as_ref().expect("the first version's resource");
    assert_eq!((first["id"].as_str(), first["meta"]["versionId"].as_str()), (Some("p1"), Some("1")));
    assert_eq!(first["name"], patient()["name"]);
    assert!(resources[1].is_none(), "a deletion has no resource");
    assert_eq!(patients.list("sp_family"), [some(&["chalmers"]), None]);
    assert_eq!(patients.list("sp_given"), [some(&["peter", "james"]), None]);
    assert_eq!(patients.list("sp_gender"), [some(&["male"]), None]);
    assert_eq!(patients.list("sp_birthdate"), [some(&["1974-12-25"]), None]);
    assert_eq!(patients.list("sp_identifier"), [some(&["urn:oid:1.2.36.146.595.217.0.1|12345"]), None]);
    assert_eq!(patients.list("sp_organization"), [some(&["Organization/1"]), None]);
    assert_eq!(patients.list("sp_death_date"), [None, None]);

    let observations = ProjectionFile::read(output.get(&observation_key).await.expect("observation file"));
    assert_eq!((observations.ids(), observations.versions(), observations.deleted()), (vec!["o1".to_string()], vec![1], vec![false]));
    assert_eq!(observations.list("sp_code"), [some(&["http://loinc.org|8867-4"])]);
    assert_eq!(observations.list("sp_subject"), [some(&["Patient/p1"])]);
    assert_eq!(observations.list("sp_patient"), [some(&["Patient/p1"])]);
    assert_eq!(observations.list("sp_category"), [some(&["http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"])]);
    assert_eq!(observations.list("sp_date"), [some(&["2024-05-01T12:00:00Z"])]);
    assert_eq!(observations.list("sp_value_quantity"), [some(&["72|http://unitsofmeasure.org|/min"])]);
    assert_eq!(observations.list("sp_status"), [some(&["final"])]);

    // The Lambda response names no failure; a redelivered batch replaces its own files.
    let before = output.get(&patient_key).await.expect("patient file");
    let response = projector.handle(event.clone()).await.expect("handled");
    assert_eq!(serde_json::to_value(&response).expect("json"), json!({"batchItemFailures": []}));
    assert_eq!(keys(output.as_ref(), PROJECTIONS_PREFIX).await, [observation_key, patient_key.clone()]);
    assert_eq!(output.get(&patient_key).await.expect("patient file"), before, "files are deterministic");
}

#[tokio::test]
async fn records_of_a_deleted_datastore_are_skipped_not_retried() {
    let f = fixture().await;
    write_batch_resources(&f).await;
    let event = event(BATCH, &f, |_| {}).await;
    f.services.datastores.delete(DatastoreIdRequest { datastore_id: f.ds.id.clone() }).await.expect("delete datastore");
    let output = Arc::new(MemoryObjectStore::new());
    let report = Projector::new(f.services.clone(), output.clone()).project(&event).await.expect("projected");
    assert!(report.files.is_empty());
    assert_eq!(report.skipped.get(&SkipReason::DatastoreGone), Some(&3));
    assert_eq!(report.retry_from, None);
    assert!(keys(output.as_ref(), "").await.is_empty());
}

#[tokio::test]
async fn large_bodies_are_opened_from_the_object_store() {
    let f = fixture().await;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![0x42_u8; 600 * 1024]);
    let confidential = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]);
    let binary =
        json!({"resourceType": "Binary", "id": "b1", "meta": {"security": confidential}, "contentType": "application/pdf", "data": data});
    f.services.resources.update(&f.ds, "Binary", "b1", binary, None).await.expect("put binary");
    let event = event(LARGE_BODY, &f, |item| assert!(item.get_str("bref").is_some(), "the body went to the object store")).await;
    let output = Arc::new(MemoryObjectStore::new());
    let report = Projector::new(f.services.clone(), output.clone()).project(&event).await.expect("projected");
    let key = projection_key(&f.ds.id, "Binary", may_1(), &record_batch_id(&event, 0));
    assert_eq!(report.files.get(&key), Some(&1));
    let file = ProjectionFile::read(output.get(&key).await.expect("binary file"));
    let resource = file.resources().remove(0).expect("the resource");
    assert_eq!(resource["data"].as_str().map(str::len), Some(data.len()));
    assert_eq!(file.list("sp__security"), [some(&["http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"])]);
}

/// An object store whose puts fail for keys containing one of `failing` (fault injection).
struct FlakyStore {
    inner: MemoryObjectStore,
    failing: Mutex<Vec<String>>,
}

impl FlakyStore {
    fn new() -> Self {
        FlakyStore { inner: MemoryObjectStore::new(), failing: Mutex::new(Vec::new()) }
    }
    fn fail(&self, fragments: &[&str]) {
        *self.failing.lock().expect("lock") = fragments.iter().map(|f| f.to_string()).collect();
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        if self.failing.lock().expect("lock").iter().any(|f| key.contains(f.as_str())) {
            return Err(StorageError::internal("injected outage"));
        }
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StorageResult<ObjectList> {
        self.inner.list(prefix, start_after, limit).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key).await
    }
    async fn create_upload(&self, key: &str) -> StorageResult<Upload> {
        self.inner.create_upload(key).await
    }
    async fn upload_part(&self, upload: &Upload, number: u32, body: Bytes) -> StorageResult<UploadedPart> {
        self.inner.upload_part(upload, number, body).await
    }
    async fn complete_upload(&self, upload: &Upload, parts: &[UploadedPart]) -> StorageResult<()> {
        self.inner.complete_upload(upload, parts).await
    }
    async fn abort_upload(&self, upload: &Upload) -> StorageResult<()> {
        self.inner.abort_upload(upload).await
    }
}

/// The records of `event` from index `from` on: what Lambda redelivers after a partial failure.
fn redelivery(event: &DynamoDbEvent, from: &str) -> DynamoDbEvent {
    let mut redelivered = event.clone();
    let start = event.records.iter().position(|r| r.change.sequence_number.as_deref() == Some(from)).expect("the checkpoint is a record");
    redelivered.records.drain(..start);
    redelivered
}

#[tokio::test]
async fn a_failed_upload_names_the_checkpoint_and_the_redelivery_leaves_no_duplicate() {
    let f = fixture().await;
    write_batch_resources(&f).await;
    let full = event(BATCH, &f, |_| {}).await;
    // Patient p1 v1 (0) and Observation o1 (3): one file each.
    let mut event = full.clone();
    event.records = vec![full.records[0].clone(), full.records[3].clone()];
    let output = Arc::new(FlakyStore::new());
    let projector = Projector::new(f.services.clone(), output.clone());

    output.fail(&["/Observation/"]);
    let response = projector.handle(event.clone()).await.expect("handled");
    let observation_seq = event.records[1].change.sequence_number.clone().expect("a sequence number");
    assert_eq!(serde_json::to_value(&response).expect("json"), json!({"batchItemFailures": [{"itemIdentifier": observation_seq}]}));
    let patient_key = projection_key(&f.ds.id, "Patient", may_1(), &record_batch_id(&event, 0));
    assert_eq!(keys(output.as_ref(), PROJECTIONS_PREFIX).await, std::slice::from_ref(&patient_key));

    output.fail(&[]);
    let report = projector.project(&redelivery(&event, &observation_seq)).await.expect("projected");
    assert_eq!(report.retry_from, None);
    let observation_key = projection_key(&f.ds.id, "Observation", may_1(), &record_batch_id(&event, 1));
    assert_eq!(keys(output.as_ref(), PROJECTIONS_PREFIX).await, [observation_key, patient_key]);
}

#[tokio::test]
async fn a_written_file_that_straddles_the_failure_moves_the_checkpoint_back() {
    let f = fixture().await;
    write_batch_resources(&f).await;
    let event = event(BATCH, &f, |_| {}).await;
    let output = Arc::new(FlakyStore::new());
    let projector = Projector::new(f.services.clone(), output.clone());

    // The Observation file (record 3) fails; the Patient file (records 0 and 5) is written but
    // holds a row after the failure, so the retry must start at its first record.
    output.fail(&["/Observation/"]);
    let report = projector.project(&event).await.expect("projected");
    let first_seq = event.records[0].change.sequence_number.clone().expect("a sequence number");
    assert_eq!(report.retry_from.as_deref(), Some(first_seq.as_str()));
    assert_eq!(report.files.len(), 1);

    output.fail(&[]);
    let report = projector.project(&redelivery(&event, &first_seq)).await.expect("projected");
    assert_eq!((report.files.len(), report.rows(), report.retry_from), (2, 3, None));
    let all = keys(output.as_ref(), PROJECTIONS_PREFIX).await;
    let mut rows = 0;
    for key in &all {
        rows += ProjectionFile::read(output.get(key).await.expect("file")).rows();
    }
    assert_eq!((all.len(), rows), (2, 3), "every version in exactly one file");
}

/// A key service that is throttled on every unwrap (fault injection).
struct ThrottledKeys;

#[async_trait]
impl KeyService for ThrottledKeys {
    async fn generate_data_key(&self, _master_key_id: &str, _context: &str) -> StorageResult<DataKey> {
        Err(StorageError::new(StorageErrorKind::Throttled, "injected throttling"))
    }
    async fn decrypt_data_key(&self, _master_key_id: &str, _context: &str, _wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>> {
        Err(StorageError::new(StorageErrorKind::Throttled, "injected throttling"))
    }
    fn default_key_id(&self) -> String {
        "memory/default".into()
    }
}

#[tokio::test]
async fn a_throttled_key_service_is_retried_and_a_tampered_body_is_skipped() {
    let f = fixture().await;
    write_batch_resources(&f).await;
    let event = event(BATCH, &f, |_| {}).await;

    let throttled = Services::new(config(), Backends { keys: Arc::new(ThrottledKeys), ..f.backends.clone() });
    let output = Arc::new(MemoryObjectStore::new());
    let report = Projector::new(throttled, output.clone()).project(&event).await.expect("projected");
    assert_eq!(report.retry_from, event.records[0].change.sequence_number);
    assert!(report.files.is_empty() && keys(output.as_ref(), "").await.is_empty());

    // A body that fails authentication can never be opened: skipped, the rest projected.
    let tampered = self::event(BATCH, &f, |item| {
        if item.key.pk.contains("#Observation#") {
            if let Some(AttrValue::B(body)) = item.attrs.get_mut("body") {
                let last = body.len() - 1;
                body[last] ^= 1;
            }
        }
    })
    .await;
    let report = Projector::new(f.services.clone(), output.clone()).project(&tampered).await.expect("projected");
    assert_eq!(report.skipped.get(&SkipReason::Unreadable), Some(&1));
    assert_eq!((report.files.len(), report.rows(), report.retry_from), (1, 2, None));
}
