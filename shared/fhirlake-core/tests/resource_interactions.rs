//! The FHIR interactions over the in-memory adapters: versioning, concurrency, deletion,
//! history paging, large bodies and encryption at rest.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use fhirlake_core::datastores::{ActiveDatastore, CreateFhirDatastoreRequest, DatastoreIdRequest};
use fhirlake_core::resources::{HistoryQuery, HistoryScope, Method, PatchDocument};
use fhirlake_core::{Backends, CoreError, ServiceConfig, Services};
use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{ItemTable, ObjectStore, Query, RandomIds};
use serde_json::{json, Value};

struct Fixture {
    services: Services,
    table: Arc<MemoryItemTable>,
    objects: Arc<MemoryObjectStore>,
    clock: Arc<FixedClock>,
    ds: ActiveDatastore,
}

async fn fixture() -> Fixture {
    let table = Arc::new(MemoryItemTable::new());
    let objects = Arc::new(MemoryObjectStore::new());
    let clock = Arc::new(FixedClock::new(DateTime::from_timestamp(1_700_000_000, 0).unwrap()));
    let backends = Backends {
        table: table.clone(),
        objects: objects.clone(),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: clock.clone(),
        ids: Arc::new(RandomIds),
    };
    let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost");
    let services = Services::new(config, backends);
    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("create datastore");
    let ds = services.datastores.active(&created.datastore_id).await.expect("datastore active");
    Fixture { services, table, objects, clock, ds }
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "gender": "female", "birthDate": "1970-01-01"})
}

fn body(v: &fhirlake_core::resources::StoredVersion) -> Value {
    serde_json::from_slice(v.body.as_ref().expect("a body")).expect("json")
}

#[tokio::test]
async fn create_read_update_keep_versions_and_meta() {
    let f = fixture().await;
    let r = &f.services.resources;
    let created = r.create(&f.ds, "Patient", patient("Smith")).await.unwrap();
    assert!(created.created);
    let v1 = created.version;
    assert_eq!(v1.version, 1);
    let b1 = body(&v1);
    assert_eq!(b1["meta"]["versionId"], "1");
    assert_eq!(b1["id"], v1.id.as_str());

    f.clock.advance(Duration::seconds(1));
    let mut next = patient("Jones");
    next["id"] = json!(v1.id);
    next["meta"] = json!({"versionId": "99", "tag": [{"code": "kept"}]});
    let v2 = r.update(&f.ds, "Patient", &v1.id, next, Some(1)).await.unwrap();
    assert!(!v2.created);
    assert_eq!(v2.version.version, 2);
    let b2 = body(&v2.version);
    assert_eq!(b2["meta"]["versionId"], "2");
    assert_eq!(b2["meta"]["tag"][0]["code"], "kept");

    let read = r.read(&f.ds, "Patient", &v1.id).await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(body(&read)["name"][0]["family"], "Jones");
    let old = r.vread(&f.ds, "Patient", &v1.id, 1).await.unwrap();
    assert_eq!(body(&old)["name"][0]["family"], "Smith");

    let stale = r.update(&f.ds, "Patient", &v1.id, json!({"resourceType": "Patient", "id": v1.id}), Some(1)).await;
    assert!(matches!(stale, Err(CoreError::PreconditionFailed(_))), "{stale:?}");
}

#[tokio::test]
async fn bodies_are_encrypted_at_rest() {
    let f = fixture().await;
    let id = f.services.resources.create(&f.ds, "Patient", patient("Zebediah-Quux")).await.unwrap().version.id;
    let items = f.table.query(&Query::partition(format!("r#{}#Patient#{id}", f.ds.id), 10)).await.unwrap().items;
    assert_eq!(items.len(), 1);
    let raw = format!("{items:?}").into_bytes();
    let needle = b"Zebediah-Quux";
    assert!(!raw.windows(needle.len()).any(|w| w == needle), "plaintext family name found in the table");
}

#[tokio::test]
async fn invalid_resources_write_nothing() {
    let f = fixture().await;
    let r = &f.services.resources;
    let bad = r.create(&f.ds, "Patient", json!({"resourceType": "Patient", "gender": 7})).await;
    assert!(matches!(bad, Err(CoreError::InvalidResource(_))), "{bad:?}");
    let wrong_type = r.create(&f.ds, "Patient", json!({"resourceType": "Observation"})).await;
    assert!(matches!(wrong_type, Err(CoreError::InvalidResource(_))), "{wrong_type:?}");
    let unknown = r.create(&f.ds, "Spaceship", json!({"resourceType": "Spaceship"})).await;
    assert!(matches!(unknown, Err(CoreError::NotFound(_))), "{unknown:?}");
    let page = r.history(&f.ds, HistoryScope::System, &HistoryQuery { count: 10, ..Default::default() }).await.unwrap();
    assert!(page.entries.is_empty());
}

#[tokio::test]
async fn update_checks_the_body_id_and_creates_with_a_client_id() {
    let f = fixture().await;
    let r = &f.services.resources;
    let mismatch = r.update(&f.ds, "Patient", "a", json!({"resourceType": "Patient", "id": "b"}), None).await;
    assert!(matches!(mismatch, Err(CoreError::Invalid(_))));
    let missing = r.update(&f.ds, "Patient", "a", json!({"resourceType": "Patient"}), None).await;
    assert!(matches!(missing, Err(CoreError::Invalid(_))));
    let created = r.update(&f.ds, "Patient", "client-id.1", json!({"resourceType": "Patient", "id": "client-id.1"}), None).await.unwrap();
    assert!(created.created);
    assert_eq!(created.version.method, Method::CreateByUpdate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_lose_an_update() {
    let f = fixture().await;
    let id = f.services.resources.create(&f.ds, "Patient", patient("A")).await.unwrap().version.id;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let services = f.services.clone();
        let ds = f.ds.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..10 {
                let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("w{w}-{i}")}]});
                versions.push(services.resources.update(&ds, "Patient", &id, body, None).await.expect("update").version.version);
            }
            versions
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (2..=81).collect::<Vec<u64>>(), "every write got its own version");
    let latest = f.services.resources.read(&f.ds, "Patient", &id).await.unwrap();
    assert_eq!(latest.version, 81);
    // The writes that lost a race removed their entries again, and the winners retired the
    // entries of the versions they superseded: one history entry per version at each level, and
    // one listing entry.
    let count = |pk: String| {
        let table = f.table.clone();
        async move { table.query(&Query::partition(pk, 1000)).await.expect("query").items.len() }
    };
    let shard = fhirlake_core::layout::history_shard(&id);
    assert_eq!(count(fhirlake_core::layout::type_history_pk(&f.ds.id, "Patient", shard)).await, 81);
    assert_eq!(count(fhirlake_core::layout::system_history_pk(&f.ds.id, shard)).await, 81);
    assert_eq!(count(fhirlake_core::layout::listing_pk(&f.ds.id, "Patient")).await, 1);
}

#[tokio::test]
async fn delete_keeps_versions_and_allows_resurrection() {
    let f = fixture().await;
    let r = &f.services.resources;
    let id = r.create(&f.ds, "Patient", patient("A")).await.unwrap().version.id;
    let deleted = r.delete(&f.ds, "Patient", &id, None).await.unwrap().expect("a deletion version");
    assert_eq!(deleted.version, 2);
    assert!(matches!(r.read(&f.ds, "Patient", &id).await, Err(CoreError::Gone(_))));
    assert!(matches!(r.vread(&f.ds, "Patient", &id, 2).await, Err(CoreError::Gone(_))));
    assert!(r.vread(&f.ds, "Patient", &id, 1).await.is_ok());
    assert!(r.delete(&f.ds, "Patient", &id, None).await.unwrap().is_none(), "deleting twice writes nothing");
    assert!(matches!(r.delete(&f.ds, "Patient", "never", None).await, Err(CoreError::NotFound(_))));
    assert!(matches!(r.patch(&f.ds, "Patient", &id, &PatchDocument::Json(json!([])), None).await, Err(CoreError::Gone(_))));
    let back = r.update(&f.ds, "Patient", &id, json!({"resourceType": "Patient", "id": id}), None).await.unwrap();
    assert!(back.created);
    assert_eq!(back.version.version, 3);
    let history =
        r.history(&f.ds, HistoryScope::Instance("Patient", &id), &HistoryQuery { count: 10, ..Default::default() }).await.unwrap();
    let methods: Vec<Method> = history.entries.iter().map(|v| v.method).collect();
    assert_eq!(methods, [Method::CreateByUpdate, Method::Delete, Method::Create]);
    assert_eq!(history.total, Some(3));
}

#[tokio::test]
async fn patch_applies_json_and_fhirpath_patches_and_validates_the_result() {
    let f = fixture().await;
    let r = &f.services.resources;
    let id = r.create(&f.ds, "Patient", patient("A")).await.unwrap().version.id;
    let json_patch = PatchDocument::Json(json!([{"op": "replace", "path": "/gender", "value": "male"}]));
    let v2 = r.patch(&f.ds, "Patient", &id, &json_patch, Some(1)).await.unwrap();
    assert_eq!(body(&v2.version)["gender"], "male");
    assert_eq!(v2.version.method, Method::Patch);
    let fhirpath = PatchDocument::FhirPath(json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.birthDate"}, {"name": "value", "valueDate": "1980-02-03"}]}]}));
    let v3 = r.patch(&f.ds, "Patient", &id, &fhirpath, None).await.unwrap();
    assert_eq!(body(&v3.version)["birthDate"], "1980-02-03");
    let invalid = PatchDocument::Json(json!([{"op": "add", "path": "/foo", "value": 1}]));
    assert!(matches!(r.patch(&f.ds, "Patient", &id, &invalid, None).await, Err(CoreError::InvalidResource(_))));
    assert_eq!(r.read(&f.ds, "Patient", &id).await.unwrap().version, 3, "a rejected patch writes nothing");
}

#[tokio::test]
async fn history_pages_cover_every_version_once_newest_first() {
    let f = fixture().await;
    let r = &f.services.resources;
    let mut ids = Vec::new();
    for i in 0..23 {
        f.clock.advance(Duration::milliseconds(10));
        ids.push(
            r.create(&f.ds, "Observation", json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("c{i}")}}))
                .await
                .unwrap()
                .version
                .id,
        );
    }
    r.create(&f.ds, "Patient", patient("other type")).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = r.history(&f.ds, HistoryScope::Type("Observation"), &HistoryQuery { count: 5, since: None, cursor }).await.unwrap();
        assert!(page.entries.len() <= 5);
        seen.extend(page.entries.iter().map(|v| (v.last_updated, v.id.clone())));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "newest first");
    let mut seen_ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    seen_ids.sort();
    ids.sort();
    assert_eq!(seen_ids, ids);

    let system = r.history(&f.ds, HistoryScope::System, &HistoryQuery { count: 100, ..Default::default() }).await.unwrap();
    assert_eq!(system.entries.len(), 24);
    let since: DateTime<Utc> = system.entries[4].last_updated;
    let recent = r.history(&f.ds, HistoryScope::System, &HistoryQuery { count: 100, since: Some(since), cursor: None }).await.unwrap();
    assert_eq!(recent.entries.len(), 5);
}

#[tokio::test]
async fn large_bodies_go_to_the_object_store_encrypted() {
    let f = fixture().await;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![0x5a_u8; 600 * 1024]);
    let binary = json!({"resourceType": "Binary", "contentType": "application/octet-stream", "data": data});
    let created = f.services.resources.create(&f.ds, "Binary", binary).await.unwrap();
    let listed = f.objects.list("bodies/", None, 10).await.unwrap();
    assert_eq!(listed.objects.len(), 1);
    assert!(listed.objects[0].size > 600 * 1024);
    let stored = f.objects.get(&listed.objects[0].key).await.unwrap();
    assert!(!stored.windows(64).any(|w| w == &data.as_bytes()[..64]), "the object is encrypted");
    let read = f.services.resources.read(&f.ds, "Binary", &created.version.id).await.unwrap();
    assert_eq!(body(&read)["data"].as_str().map(str::len), Some(data.len()));
    let q = Query::partition(format!("r#{}#Binary#{}", f.ds.id, created.version.id), 10);
    let items = f.table.query(&q).await.unwrap().items;
    assert!(items[0].get_str("bref").is_some());
}

#[tokio::test]
async fn deleted_datastores_are_unreachable() {
    let f = fixture().await;
    f.services.resources.create(&f.ds, "Patient", patient("A")).await.unwrap();
    f.services.datastores.delete(DatastoreIdRequest { datastore_id: f.ds.id.clone() }).await.unwrap();
    assert!(matches!(f.services.datastores.active(&f.ds.id).await, Err(CoreError::NotFound(_))));
}

#[tokio::test]
async fn version_items_open_as_reads_do_and_only_in_their_datastore() {
    let f = fixture().await;
    let r = &f.services.resources;
    let created = r.create(&f.ds, "Patient", patient("Open")).await.unwrap().version;
    r.delete(&f.ds, "Patient", &created.id, None).await.unwrap();
    let q = Query::partition(format!("r#{}#Patient#{}", f.ds.id, created.id), 10);
    let items = f.table.query(&q).await.unwrap().items;
    assert_eq!(items.len(), 2);

    let opened = r.open_version_item(&f.ds, &items[0]).await.unwrap();
    assert_eq!((opened.resource_type.as_str(), opened.id.as_str(), opened.version), ("Patient", created.id.as_str(), 1));
    assert_eq!(opened.last_updated, created.last_updated);
    assert_eq!(opened.method, Method::Create);
    assert_eq!(opened.body, created.body);
    let deletion = r.open_version_item(&f.ds, &items[1]).await.unwrap();
    assert!(deletion.is_deleted());
    assert_eq!((deletion.version, deletion.method), (2, Method::Delete));

    // Not a version item, or a version item of another datastore.
    let history = f.table.query(&Query::partition(format!("ht#{}#Patient#0", f.ds.id), 10)).await.unwrap().items;
    let other = f.services.datastores.create(CreateFhirDatastoreRequest::r4()).await.unwrap();
    let other = f.services.datastores.active(&other.datastore_id).await.unwrap();
    assert!(matches!(r.open_version_item(&other, &items[0]).await, Err(CoreError::Invalid(_))));
    for item in history {
        assert!(matches!(r.open_version_item(&f.ds, &item).await, Err(CoreError::Invalid(_))));
    }
    // A body moved to another version's item fails authentication.
    let mut moved = items[0].clone();
    moved.key.sk = "v#000000000002".into();
    assert!(matches!(r.open_version_item(&f.ds, &moved).await, Err(CoreError::Internal(_))));
}

#[tokio::test]
async fn update_many_writes_each_resource_as_its_own_update() {
    let f = fixture().await;
    let r = &f.services.resources;
    let existing =
        r.update(&f.ds, "Patient", "old", json!({"resourceType": "Patient", "id": "old", "gender": "male"}), None).await.unwrap();
    f.clock.advance(Duration::seconds(1));
    let mut batch: Vec<Value> = (0..120).map(|i| json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "female"})).collect();
    batch.push(json!({"resourceType": "Patient", "id": "old", "gender": "other"}));
    batch.push(json!({"resourceType": "Patient", "id": "p7", "gender": "unknown"})); // p7 twice: the later wins
    batch.push(json!({"resourceType": "Patient", "id": "bad", "gender": "not-a-gender"}));
    batch.push(json!({"resourceType": "NotAType", "id": "x"}));
    batch.push(json!({"resourceType": "Patient", "gender": "male"}));
    let outcomes = r.update_many(&f.ds, batch).await;
    assert_eq!(outcomes.len(), 125);
    assert!(outcomes[..120].iter().all(|o| o.as_ref().is_ok_and(|w| w.created && w.version.version == 1)));
    let old = outcomes[120].as_ref().expect("old updated");
    assert!(!old.created && old.version.version == 2 && old.version.last_updated > existing.version.last_updated);
    assert!(outcomes[121].as_ref().is_ok_and(|w| w.version.version == 2));
    assert!(matches!(outcomes[122], Err(CoreError::InvalidResource(_))));
    assert!(matches!(outcomes[123], Err(CoreError::NotFound(_))));
    assert!(matches!(outcomes[124], Err(CoreError::Invalid(_))));

    // Reads, history and search see exactly what single updates would have written.
    assert_eq!(body(&r.read(&f.ds, "Patient", "p7").await.unwrap())["gender"], "unknown");
    assert_eq!(body(&r.read(&f.ds, "Patient", "old").await.unwrap())["gender"], "other");
    let history =
        r.history(&f.ds, HistoryScope::Instance("Patient", "old"), &HistoryQuery { count: 10, ..Default::default() }).await.unwrap();
    assert_eq!(history.entries.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    let search = |q: &str| {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        fhirlake_fhir::search::query::parse(Some("Patient"), &params, fhirlake_fhir::search::query::Handling::Strict).unwrap()
    };
    let scope = fhirlake_core::search::Scope::default();
    let count = |q: &'static str| {
        let request = search(q);
        let services = &f.services;
        let ds = &f.ds;
        let scope = scope.clone();
        async move { services.search.search(ds, &request, &scope, 1000).await.unwrap().matches.len() }
    };
    assert_eq!(count("gender=female").await, 119);
    assert_eq!(count("gender=male").await, 0, "the superseded version of old no longer matches");
    assert_eq!(count("gender=other").await, 1);
    assert_eq!(count("gender=unknown").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_many_racing_single_updates_loses_no_version() {
    let f = Arc::new(fixture().await);
    let mut tasks = Vec::new();
    for round in 0..4 {
        let bulk = f.clone();
        tasks.push(tokio::spawn(async move {
            let f = bulk;
            let batch: Vec<Value> =
                (0..40).map(|i| json!({"resourceType": "Patient", "id": format!("p{i}"), "birthDate": format!("19{round}0")})).collect();
            f.services.resources.update_many(&f.ds, batch).await.into_iter().all(|o| o.is_ok())
        }));
        let single = f.clone();
        tasks.push(tokio::spawn(async move {
            let f = single;
            let mut ok = true;
            for i in 0..10 {
                let resource = json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "female"});
                ok &= f.services.resources.update(&f.ds, "Patient", &format!("p{i}"), resource, None).await.is_ok();
            }
            ok
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap(), "every write succeeds");
    }
    for i in 0..40 {
        let id = format!("p{i}");
        let query = HistoryQuery { count: 100, ..Default::default() };
        let history = f.services.resources.history(&f.ds, HistoryScope::Instance("Patient", &id), &query).await.unwrap();
        let versions: Vec<u64> = history.entries.iter().map(|v| v.version).collect();
        let expected = if i < 10 { 8 } else { 4 };
        assert_eq!(versions, (1..=expected).rev().collect::<Vec<u64>>(), "{id}: one version per write, none lost");
    }
}
