//! The datastore service over the in-memory adapters.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore, SequentialIds};
use fhirlake_ports::{ItemTable, KeyService};

use super::*;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

struct Fixture {
    service: DatastoreService,
    table: Arc<MemoryItemTable>,
    keys: Arc<MemoryKeyService>,
    clock: Arc<FixedClock>,
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

fn fixture() -> Fixture {
    let table = Arc::new(MemoryItemTable::new());
    let keys = Arc::new(MemoryKeyService::new());
    let clock = Arc::new(FixedClock::new(start()));
    let backends = Backends {
        table: table.clone(),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: keys.clone(),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::new()),
    };
    let config = ServiceConfig::new(REGION, ACCOUNT, "http://127.0.0.1:8080");
    Fixture { service: DatastoreService::new(Arc::new(config), backends), table, keys, clock }
}

fn named(name: &str) -> CreateFhirDatastoreRequest {
    CreateFhirDatastoreRequest { datastore_name: Some(name.to_string()), ..CreateFhirDatastoreRequest::r4() }
}

fn id_request(id: &str) -> DatastoreIdRequest {
    DatastoreIdRequest { datastore_id: id.to_string() }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag { key: key.to_string(), value: value.to_string() }
}

async fn create(f: &Fixture, request: CreateFhirDatastoreRequest) -> DatastoreSummary {
    match f.service.create(request).await {
        Ok(created) => created,
        Err(e) => panic!("create failed: {e}"),
    }
}

async fn describe(f: &Fixture, id: &str) -> DatastoreProperties {
    match f.service.describe(id_request(id)).await {
        Ok(response) => response.datastore_properties,
        Err(e) => panic!("describe failed: {e}"),
    }
}

async fn list(f: &Fixture, request: ListFhirDatastoresRequest) -> ListFhirDatastoresResponse {
    match f.service.list(request).await {
        Ok(response) => response,
        Err(e) => panic!("list failed: {e}"),
    }
}

#[tokio::test]
async fn create_returns_creating_and_describe_sees_active() {
    let f = fixture();
    let created = create(&f, named("first")).await;
    assert_eq!(created.datastore_id.len(), 32);
    assert!(created.datastore_id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(created.datastore_status, DatastoreStatus::Creating);
    assert_eq!(created.datastore_arn, format!("arn:aws:healthlake:{REGION}:{ACCOUNT}:datastore/fhir/{}", created.datastore_id));
    assert_eq!(created.datastore_endpoint, format!("http://127.0.0.1:8080/datastore/{}/r4/", created.datastore_id));

    let props = describe(&f, &created.datastore_id).await;
    assert_eq!(props.datastore_status, DatastoreStatus::Active);
    assert_eq!(props.datastore_name.as_deref(), Some("first"));
    assert_eq!(props.created_at, Some(start()));
    assert_eq!(props.datastore_type_version, FhirVersion::R4);
    let sse = props.sse_configuration.map(|s| s.kms_encryption_config.cmk_type);
    assert_eq!(sse, Some(CmkType::AwsOwnedKmsKey));
}

#[tokio::test]
async fn data_key_is_wrapped_under_the_default_or_customer_key_with_the_id_as_context() {
    let f = fixture();
    let owned = create(&f, named("owned")).await;
    let active = f.service.active(&owned.datastore_id).await.ok();
    let active = active.unwrap_or_else(|| panic!("datastore is not active"));
    assert_eq!(active.master_key_id, f.keys.default_key_id());
    assert_eq!(active.identity_provider.authorization_strategy, AuthorizationStrategy::AwsAuth);
    assert!(f.keys.decrypt_data_key(&active.master_key_id, &owned.datastore_id, &active.wrapped_data_key).await.is_ok());
    assert!(f.keys.decrypt_data_key(&active.master_key_id, "another-id", &active.wrapped_data_key).await.is_err());

    let key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let customer = CreateFhirDatastoreRequest {
        sse_configuration: Some(SseConfiguration {
            kms_encryption_config: KmsEncryptionConfig { cmk_type: CmkType::CustomerManagedKmsKey, kms_key_id: Some(key_arn.to_string()) },
        }),
        ..named("customer")
    };
    let customer = create(&f, customer).await;
    let active = f.service.active(&customer.datastore_id).await.ok();
    assert_eq!(active.map(|a| a.master_key_id), Some(key_arn.to_string()));
    let props = describe(&f, &customer.datastore_id).await;
    let key_id = props.sse_configuration.and_then(|s| s.kms_encryption_config.kms_key_id);
    assert_eq!(key_id.as_deref(), Some(key_arn));
}

#[tokio::test]
async fn active_advances_a_creating_datastore_and_rejects_unknown_ids() {
    let f = fixture();
    let created = create(&f, named("lazy")).await;
    assert!(f.service.active(&created.datastore_id).await.is_ok());
    let item = f.table.get(&store::datastore_key(&created.datastore_id)).await.ok().flatten();
    assert_eq!(item.and_then(|i| i.get_str("status").map(str::to_string)).as_deref(), Some("ACTIVE"));

    assert!(matches!(f.service.active(&"f".repeat(32)).await, Err(CoreError::NotFound(_))));
    assert!(matches!(f.service.active("not/a valid#id").await, Err(CoreError::NotFound(_))));
}

#[tokio::test]
async fn create_rejects_invalid_requests() {
    let f = fixture();
    let cases: Vec<(CreateFhirDatastoreRequest, &str)> = vec![
        (named(""), "DatastoreName"),
        (named("no*stars"), "DatastoreName"),
        (CreateFhirDatastoreRequest { client_token: Some("under_score".into()), ..named("a") }, "ClientToken"),
        (
            CreateFhirDatastoreRequest {
                sse_configuration: Some(SseConfiguration {
                    kms_encryption_config: KmsEncryptionConfig { cmk_type: CmkType::CustomerManagedKmsKey, kms_key_id: None },
                }),
                ..named("a")
            },
            "KmsKeyId",
        ),
        (
            CreateFhirDatastoreRequest {
                preload_data_config: Some(PreloadDataConfig { preload_data_type: PreloadDataType::Synthea }),
                ..named("a")
            },
            "PreloadDataConfig",
        ),
        (CreateFhirDatastoreRequest { tags: Some(vec![tag("a", "1"), tag("a", "2")]), ..named("a") }, "repeat"),
        (
            CreateFhirDatastoreRequest {
                identity_provider_configuration: Some(IdentityProviderConfiguration {
                    authorization_strategy: AuthorizationStrategy::SmartOnFhirV1,
                    fine_grained_authorization_enabled: None,
                    metadata: None,
                    idp_lambda_arn: None,
                }),
                ..named("a")
            },
            "Metadata",
        ),
    ];
    for (request, fragment) in cases {
        match f.service.create(request).await {
            Err(CoreError::Invalid(message)) => assert!(message.contains(fragment), "{message} lacks {fragment}"),
            other => panic!("expected Invalid mentioning {fragment}, got {other:?}"),
        }
    }
    assert!(list(&f, ListFhirDatastoresRequest::default()).await.datastore_properties_list.is_empty());
}

#[tokio::test]
async fn client_token_makes_create_idempotent() {
    let f = fixture();
    let request = CreateFhirDatastoreRequest { client_token: Some("token-1".into()), ..named("idem") };
    let first = create(&f, request.clone()).await;
    let again = create(&f, request.clone()).await;
    assert_eq!(first.datastore_id, again.datastore_id);
    assert_eq!(again.datastore_status, DatastoreStatus::Active);

    let different = CreateFhirDatastoreRequest { datastore_name: Some("other".into()), ..request };
    match f.service.create(different).await {
        Err(CoreError::Invalid(message)) => assert!(message.contains("ClientToken"), "{message}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(list(&f, ListFhirDatastoresRequest::default()).await.datastore_properties_list.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_token_make_one_datastore() {
    let f = Arc::new(fixture());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let request = CreateFhirDatastoreRequest { client_token: Some("same".into()), ..named("race") };
            f.service.create(request).await.map(|c| c.datastore_id).ok()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.ok().flatten());
    }
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(list(&f, ListFhirDatastoresRequest::default()).await.datastore_properties_list.len(), 1);
}

#[tokio::test]
async fn list_filters_by_name_status_and_creation_time() {
    let f = fixture();
    let a = create(&f, named("alpha")).await;
    f.clock.advance(Duration::seconds(10));
    let b = create(&f, named("beta")).await;
    f.clock.advance(Duration::seconds(10));
    let c = create(&f, named("alpha")).await;
    assert!(f.service.delete(id_request(&b.datastore_id)).await.is_ok());

    let ids =
        |response: ListFhirDatastoresResponse| response.datastore_properties_list.into_iter().map(|p| p.datastore_id).collect::<Vec<_>>();
    let filtered = |filter: DatastoreFilter| ListFhirDatastoresRequest { filter: Some(filter), ..Default::default() };

    let all = ids(list(&f, ListFhirDatastoresRequest::default()).await);
    assert_eq!(all, vec![a.datastore_id.clone(), b.datastore_id.clone(), c.datastore_id.clone()]);

    let by_name = DatastoreFilter { datastore_name: Some("alpha".into()), ..Default::default() };
    assert_eq!(ids(list(&f, filtered(by_name)).await), vec![a.datastore_id.clone(), c.datastore_id.clone()]);

    let deleted = DatastoreFilter { datastore_status: Some(DatastoreStatus::Deleted), ..Default::default() };
    assert_eq!(ids(list(&f, filtered(deleted)).await), vec![b.datastore_id.clone()]);
    let active = DatastoreFilter { datastore_status: Some(DatastoreStatus::Active), ..Default::default() };
    assert_eq!(ids(list(&f, filtered(active)).await), vec![a.datastore_id.clone(), c.datastore_id.clone()]);

    let before = DatastoreFilter { created_before: Some(start() + Duration::seconds(5)), ..Default::default() };
    assert_eq!(ids(list(&f, filtered(before)).await), vec![a.datastore_id.clone()]);
    let after = DatastoreFilter { created_after: Some(start() + Duration::seconds(5)), ..Default::default() };
    assert_eq!(ids(list(&f, filtered(after)).await), vec![b.datastore_id.clone(), c.datastore_id.clone()]);
    let window = DatastoreFilter {
        created_after: Some(start() + Duration::seconds(5)),
        created_before: Some(start() + Duration::seconds(15)),
        ..Default::default()
    };
    assert_eq!(ids(list(&f, filtered(window)).await), vec![b.datastore_id.clone()]);
}

#[tokio::test]
async fn list_pages_with_max_results_and_next_token() {
    let f = fixture();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(create(&f, named(&format!("store-{i}"))).await.datastore_id);
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = list(&f, ListFhirDatastoresRequest { max_results: Some(2), next_token: token.clone(), filter: None }).await;
        pages += 1;
        assert!(page.datastore_properties_list.len() <= 2);
        seen.extend(page.datastore_properties_list.into_iter().map(|p| p.datastore_id));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    // Exactly one page's worth: no token on the last page.
    let page = list(&f, ListFhirDatastoresRequest { max_results: Some(5), ..Default::default() }).await;
    assert_eq!(page.datastore_properties_list.len(), 5);
    assert_eq!(page.next_token, None);

    for bad in ["@@@", "djE6WFgjMTIz", &"A".repeat(40)] {
        let request = ListFhirDatastoresRequest { next_token: Some(bad.to_string()), ..Default::default() };
        assert!(matches!(f.service.list(request).await, Err(CoreError::Invalid(_))), "{bad}");
    }
    for bad in [0, 501, -1] {
        let request = ListFhirDatastoresRequest { max_results: Some(bad), ..Default::default() };
        assert!(matches!(f.service.list(request).await, Err(CoreError::Invalid(_))), "{bad}");
    }
}

#[tokio::test]
async fn update_changes_name_and_identity_provider() {
    let f = fixture();
    let created = create(&f, named("before")).await;
    let metadata = r#"{"issuer":"https://idp.example","jwks_uri":"https://idp.example/jwks","authorization_endpoint":"https://idp.example/authorize","token_endpoint":"https://idp.example/token","capabilities":["launch-standalone"],"code_challenge_methods_supported":["S256"]}"#;
    let request = UpdateFhirDatastoreRequest {
        datastore_name: Some("after".into()),
        identity_provider_configuration: Some(IdentityProviderConfiguration {
            authorization_strategy: AuthorizationStrategy::SmartOnFhir,
            fine_grained_authorization_enabled: Some(false),
            metadata: Some(metadata.to_string()),
            idp_lambda_arn: None,
        }),
        ..UpdateFhirDatastoreRequest::new(&created.datastore_id)
    };
    let updated = match f.service.update(request).await {
        Ok(updated) => updated.datastore_properties,
        Err(e) => panic!("update failed: {e}"),
    };
    assert_eq!(updated.datastore_name.as_deref(), Some("after"));
    assert_eq!(updated.datastore_status, DatastoreStatus::Active);
    let described = describe(&f, &created.datastore_id).await;
    assert_eq!(described, updated);
    let active = f.service.active(&created.datastore_id).await.ok();
    assert_eq!(active.map(|a| a.identity_provider.authorization_strategy), Some(AuthorizationStrategy::SmartOnFhir));

    let unknown = UpdateFhirDatastoreRequest::new("f".repeat(32));
    assert!(matches!(f.service.update(unknown).await, Err(CoreError::NotFound(_))));
    let bad_name =
        UpdateFhirDatastoreRequest { datastore_name: Some("x;y".into()), ..UpdateFhirDatastoreRequest::new(&created.datastore_id) };
    assert!(matches!(f.service.update(bad_name).await, Err(CoreError::Invalid(_))));

    assert!(f.service.delete(id_request(&created.datastore_id)).await.is_ok());
    let late = UpdateFhirDatastoreRequest { datastore_name: Some("late".into()), ..UpdateFhirDatastoreRequest::new(&created.datastore_id) };
    assert!(matches!(f.service.update(late).await, Err(CoreError::Conflict(_))));
}

#[tokio::test]
async fn readable_finds_the_data_key_without_writing_and_none_once_shredded() {
    let f = fixture();
    let created = create(&f, named("read-only")).await;
    let id = created.datastore_id.clone();
    let readable = f.service.readable(&id).await.ok().flatten();
    assert_eq!(readable.as_ref().map(|ds| ds.id.as_str()), Some(id.as_str()));
    // A CREATING datastore is readable, and reading it does not advance its status.
    let item = f.table.get(&store::datastore_key(&id)).await.ok().flatten();
    assert_eq!(item.as_ref().and_then(|i| i.get_str("status")), Some("CREATING"));
    assert_eq!(readable.map(|ds| ds.wrapped_data_key), item.and_then(|i| i.get_bytes("wrapped_key").map(<[u8]>::to_vec)));

    assert!(f.service.active(&id).await.is_ok());
    assert!(f.service.readable(&id).await.ok().flatten().is_some());
    assert!(f.service.delete(id_request(&id)).await.is_ok());
    assert!(matches!(f.service.readable(&id).await, Ok(None)));
    let item = f.table.get(&store::datastore_key(&id)).await.ok().flatten();
    assert_eq!(item.as_ref().and_then(|i| i.get_str("status")), Some("DELETING"), "readable must not advance DELETING");

    assert!(matches!(f.service.readable(&"f".repeat(32)).await, Ok(None)));
    assert!(matches!(f.service.readable("not/a valid#id").await, Ok(None)));
}

#[tokio::test]
async fn delete_shreds_the_key_and_goes_deleting_then_deleted() {
    let f = fixture();
    let created = create(&f, named("doomed")).await;
    let id = created.datastore_id.clone();
    assert!(f.service.active(&id).await.is_ok());

    let deleted = f.service.delete(id_request(&id)).await.ok();
    assert_eq!(deleted.as_ref().map(|d| d.datastore_status), Some(DatastoreStatus::Deleting));
    assert_eq!(deleted.map(|d| d.datastore_arn), Some(created.datastore_arn));

    let item = f.table.get(&store::datastore_key(&id)).await.ok().flatten();
    let item = item.unwrap_or_else(|| panic!("record vanished"));
    assert_eq!(item.get("wrapped_key"), None, "the wrapped data key must be destroyed");
    assert_eq!(item.get_str("status"), Some("DELETING"));
    assert!(matches!(f.service.active(&id).await, Err(CoreError::NotFound(_))));

    assert_eq!(describe(&f, &id).await.datastore_status, DatastoreStatus::Deleted);
    assert!(matches!(f.service.delete(id_request(&id)).await, Err(CoreError::Conflict(_))));
    assert!(matches!(f.service.delete(id_request(&"e".repeat(32))).await, Err(CoreError::NotFound(_))));
    assert!(matches!(f.service.delete(id_request(&"e".repeat(33))).await, Err(CoreError::Invalid(_))));
    assert!(matches!(f.service.describe(id_request(&"e".repeat(32))).await, Err(CoreError::NotFound(_))));
}

#[tokio::test]
async fn tags_are_added_replaced_listed_and_removed() {
    let f = fixture();
    let created = create(&f, CreateFhirDatastoreRequest { tags: Some(vec![tag("env", "dev")]), ..named("tagged") }).await;
    let arn = created.datastore_arn.clone();
    let tags_of = |arn: &str| {
        let service = f.service.clone();
        let arn = arn.to_string();
        async move { service.list_tags_for_resource(ListTagsForResourceRequest { resource_arn: arn }).await }
    };
    assert_eq!(tags_of(&arn).await.ok().map(|r| r.tags), Some(vec![tag("env", "dev")]));

    let add = TagResourceRequest { resource_arn: arn.clone(), tags: vec![tag("env", "prod"), tag("team", "core")] };
    assert!(f.service.tag_resource(add).await.is_ok());
    assert_eq!(tags_of(&arn).await.ok().map(|r| r.tags), Some(vec![tag("env", "prod"), tag("team", "core")]));

    let remove = UntagResourceRequest { resource_arn: arn.clone(), tag_keys: vec!["env".into(), "absent".into()] };
    assert!(f.service.untag_resource(remove).await.is_ok());
    assert_eq!(tags_of(&arn).await.ok().map(|r| r.tags), Some(vec![tag("team", "core")]));

    // 199 more fit; one beyond that does not, and nothing of the failed request is kept.
    let fill: Vec<Tag> = (0..199).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert!(f.service.tag_resource(TagResourceRequest { resource_arn: arn.clone(), tags: fill }).await.is_ok());
    let over = TagResourceRequest { resource_arn: arn.clone(), tags: vec![tag("one-too-many", "v")] };
    assert!(matches!(f.service.tag_resource(over).await, Err(CoreError::Invalid(_))));
    assert_eq!(tags_of(&arn).await.ok().map(|r| r.tags.len()), Some(200));

    assert!(matches!(tags_of("arn:aws:healthlake:us-east-1:123456789012:datastore/oops").await, Err(CoreError::Invalid(_))));
    let unknown = format!("arn:aws:healthlake:{REGION}:{ACCOUNT}:datastore/fhir/{}", "d".repeat(32));
    assert!(matches!(tags_of(&unknown).await, Err(CoreError::NotFound(_))));
    let other_region = arn.replace(REGION, "eu-west-1");
    assert!(matches!(tags_of(&other_region).await, Err(CoreError::NotFound(_))));

    assert!(f.service.delete(id_request(&created.datastore_id)).await.is_ok());
    let late = TagResourceRequest { resource_arn: arn.clone(), tags: vec![tag("late", "v")] };
    assert!(matches!(f.service.tag_resource(late).await, Err(CoreError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tagging_loses_no_tag() {
    let f = Arc::new(fixture());
    let arn = create(&f, named("busy")).await.datastore_arn;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let f = f.clone();
        let arn = arn.clone();
        tasks.push(tokio::spawn(async move {
            f.service.tag_resource(TagResourceRequest { resource_arn: arn, tags: vec![tag(&format!("k{i}"), "v")] }).await
        }));
    }
    for task in tasks {
        assert!(matches!(task.await, Ok(Ok(_))));
    }
    let tags = f.service.list_tags_for_resource(ListTagsForResourceRequest { resource_arn: arn }).await;
    assert_eq!(tags.ok().map(|t| t.tags.len()), Some(16));
}

#[test]
fn list_tokens_round_trip_and_reject_foreign_text() {
    let sk = format!("DS#{}", "a".repeat(32));
    assert_eq!(decode_list_token(&encode_list_token(&sk)).ok(), Some(sk));
    assert!(decode_list_token("").is_err());
    assert!(decode_list_token("not base64!").is_err());
    let foreign = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:TOKEN#abc");
    assert!(decode_list_token(&foreign).is_err());
}

#[test]
fn wire_shapes_use_healthlake_names() {
    let props = DatastoreProperties {
        datastore_id: "a".repeat(32),
        datastore_arn: "arn".into(),
        datastore_name: None,
        datastore_status: DatastoreStatus::CreateFailed,
        created_at: DateTime::from_timestamp_millis(1_700_000_000_250),
        datastore_type_version: FhirVersion::R4,
        datastore_endpoint: "e".into(),
        sse_configuration: None,
        preload_data_config: None,
        identity_provider_configuration: None,
        error_cause: None,
        nlp_configuration: None,
        analytics_configuration: None,
        profile_configuration: None,
        backup_status_info: None,
    };
    let json = serde_json::to_value(&props).unwrap_or_default();
    assert_eq!(json["DatastoreStatus"], "CREATE_FAILED");
    assert_eq!(json["CreatedAt"], 1_700_000_000.25);
    assert_eq!(json["DatastoreTypeVersion"], "R4");
    assert!(json.get("DatastoreName").is_none());

    let tags: Result<TagResourceRequest, _> = serde_json::from_str(r#"{"ResourceARN":"arn","Tags":[{"Key":"k","Value":"v"}],"Extra":1}"#);
    assert_eq!(tags.ok().map(|t| t.resource_arn), Some("arn".to_string()));
    let filter: Result<DatastoreFilter, _> = serde_json::from_str(r#"{"CreatedAfter":1700000000,"CreatedBefore":1700000000.5}"#);
    let filter = filter.unwrap_or_default();
    assert_eq!(filter.created_after, DateTime::from_timestamp(1_700_000_000, 0));
    assert_eq!(filter.created_before, DateTime::from_timestamp_millis(1_700_000_000_500));
    let strategy: Result<AuthorizationStrategy, _> = serde_json::from_str(r#""SMART_ON_FHIR_V1""#);
    assert_eq!(strategy.ok(), Some(AuthorizationStrategy::SmartOnFhirV1));
}
