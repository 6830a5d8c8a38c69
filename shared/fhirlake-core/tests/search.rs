//! FHIR search over the in-memory adapters: index consistency with writes, every lookup kind,
//! chains, `_has`, compartments, includes, sorting and paging.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::DateTime;
use fhirlake_core::datastores::{ActiveDatastore, CreateFhirDatastoreRequest};
use fhirlake_core::search::{Scope, SearchPage};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_fhir::search::query::{parse, Handling};
use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::RandomIds;
use serde_json::{json, Value};

struct Fixture {
    services: Services,
    ds: ActiveDatastore,
}

async fn fixture() -> Fixture {
    let backends = Backends {
        table: Arc::new(MemoryItemTable::new()),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: Arc::new(FixedClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("a time"))),
        ids: Arc::new(RandomIds),
    };
    let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost");
    let services = Services::new(config, backends);
    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("create datastore");
    let ds = services.datastores.active(&created.datastore_id).await.expect("datastore active");
    Fixture { services, ds }
}

impl Fixture {
    async fn put(&self, resource: Value) {
        let t = resource["resourceType"].as_str().expect("a type").to_string();
        let id = resource["id"].as_str().expect("an id").to_string();
        self.services.resources.update(&self.ds, &t, &id, resource, None).await.expect("put");
    }

    async fn page(&self, resource_type: &str, query: &str, scope: Scope, count: usize) -> SearchPage {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let request = parse(Some(resource_type), &params, Handling::Strict).expect("a valid search");
        self.services.search.search(&self.ds, &request, &scope, count).await.expect("search")
    }

    async fn ids(&self, resource_type: &str, query: &str) -> Vec<String> {
        self.page(resource_type, query, Scope::default(), 1000).await.matches.into_iter().map(|v| v.id).collect()
    }
}

fn patient(id: &str, family: &str, given: &str, gender: &str, birth: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth,
           "identifier": [{"system": "urn:mrn", "value": format!("mrn-{id}")}], "managingOrganization": {"reference": "Organization/org1"}})
}

fn observation(id: &str, patient: &str, code: &str, value: f64, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": date,
           "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "kg", "unit": "kg"}})
}

async fn loaded() -> Fixture {
    let f = fixture().await;
    f.put(json!({"resourceType": "Organization", "id": "org1", "name": "Acme Health"})).await;
    f.put(patient("p1", "Müller", "Anna", "female", "1974-12-25")).await;
    f.put(patient("p2", "Smith", "John", "male", "1980-05")).await;
    f.put(patient("p3", "Smithson", "Jane", "female", "2001")).await;
    f.put(observation("o1", "p1", "29463-7", 70.5, "2024-01-10T10:00:00Z")).await;
    f.put(observation("o2", "p1", "8867-4", 61.0, "2024-02-10T10:00:00Z")).await;
    f.put(observation("o3", "p2", "29463-7", 90.0, "2023-06-01")).await;
    f.put(observation("o4", "p3", "29463-7", 55.25, "2024-03")).await;
    f
}

#[tokio::test]
async fn tokens_strings_references_dates_and_quantities() {
    let f = loaded().await;
    assert_eq!(f.ids("Patient", "gender=female").await, ["p1", "p3"]);
    assert_eq!(f.ids("Patient", "identifier=urn:mrn|mrn-p2").await, ["p2"]);
    assert_eq!(f.ids("Patient", "family=smith").await, ["p2", "p3"]);
    assert_eq!(f.ids("Patient", "family=smithson").await, ["p3"]);
    assert_eq!(f.ids("Patient", "family:exact=Smith").await, ["p2"]);
    assert_eq!(f.ids("Patient", "name=muller").await, ["p1"]);
    assert_eq!(f.ids("Patient", "family:contains=mit").await, ["p2", "p3"]);
    assert_eq!(f.ids("Patient", "birthdate=1974").await, ["p1"]);
    assert_eq!(f.ids("Patient", "birthdate=ge1980&birthdate=lt2000").await, ["p2"]);
    assert_eq!(f.ids("Observation", "code=http://loinc.org|29463-7").await, ["o1", "o3", "o4"]);
    assert_eq!(f.ids("Observation", "code=8867-4,29463-7&subject=Patient/p1").await, ["o1", "o2"]);
    assert_eq!(f.ids("Observation", "patient=p2").await, ["o3"]);
    assert_eq!(f.ids("Observation", "date=gt2024-01-31").await, ["o2", "o4"]);
    assert_eq!(f.ids("Observation", "value-quantity=gt60|http://unitsofmeasure.org|kg").await, ["o1", "o2", "o3"]);
    assert_eq!(f.ids("Observation", "value-quantity=le55.25").await, ["o4"]);
    assert_eq!(f.ids("Patient", "gender:not=female").await, ["p2"]);
    assert_eq!(f.ids("Patient", "_id=p1,p3").await, ["p1", "p3"]);
    assert!(f.ids("Patient", "gender=other").await.is_empty());
}

#[tokio::test]
async fn updates_and_deletes_never_leave_stale_matches() {
    let f = loaded().await;
    f.put(patient("p2", "Jones", "John", "male", "1980-05")).await;
    assert_eq!(f.ids("Patient", "family=smith").await, ["p3"]);
    assert_eq!(f.ids("Patient", "family=jones").await, ["p2"]);
    f.services.resources.delete(&f.ds, "Patient", "p3", None).await.expect("delete");
    assert!(f.ids("Patient", "family=smith").await.is_empty());
    assert_eq!(f.ids("Patient", "gender=female").await, ["p1"]);
    assert_eq!(f.ids("Patient", "").await, ["p1", "p2"]);
}

#[tokio::test]
async fn chains_has_and_compartments() {
    let f = loaded().await;
    assert_eq!(f.ids("Observation", "subject:Patient.family=smith").await, ["o3", "o4"]);
    assert_eq!(f.ids("Observation", "subject:Patient.organization.name=acme").await, ["o1", "o2", "o3", "o4"]);
    assert_eq!(f.ids("Patient", "_has:Observation:subject:code=8867-4").await, ["p1"]);
    assert!(f.ids("Patient", "_has:Observation:subject:code=0000-0").await.is_empty());
    let scope = Scope { compartment: Some(("Patient".into(), "p1".into())) };
    let ids: Vec<String> = f.page("Observation", "", scope, 100).await.matches.into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["o1", "o2"]);
}

#[tokio::test]
async fn includes_sorting_and_paging() {
    let f = loaded().await;
    let page = f.page("Observation", "code=29463-7&_include=Observation:subject", Scope::default(), 100).await;
    let included: BTreeSet<String> = page.included.iter().map(|v| format!("{}/{}", v.resource_type, v.id)).collect();
    assert_eq!(included, BTreeSet::from(["Patient/p1".into(), "Patient/p2".into(), "Patient/p3".into()]));
    let page = f.page("Patient", "_id=p1&_revinclude=Observation:subject", Scope::default(), 100).await;
    let included: BTreeSet<String> = page.included.iter().map(|v| v.id.clone()).collect();
    assert_eq!(included, BTreeSet::from(["o1".into(), "o2".into()]));
    assert_eq!(f.ids("Observation", "_sort=-date").await, ["o4", "o2", "o1", "o3"]);
    assert_eq!(f.ids("Patient", "_sort=birthdate").await, ["p1", "p2", "p3"]);
    assert_eq!(f.ids("Observation", "_sort=subject,-value-quantity").await, ["o1", "o2", "o3", "o4"]);

    // Pages of two, through the cursor, cover every match exactly once, sorted or not.
    for query in ["", "_sort=-date"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                None => query.to_string(),
                Some(c) => format!("{query}&_cursor={c}"),
            };
            let page = f.page("Observation", &q, Scope::default(), 2).await;
            assert!(page.matches.len() <= 2);
            seen.extend(page.matches.into_iter().map(|v| v.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (4, 4), "{query}: {seen:?}");
    }
    let counted = f.page("Observation", "code=29463-7&_total=accurate", Scope::default(), 1).await;
    assert_eq!((counted.matches.len(), counted.total), (1, Some(3)));
}
