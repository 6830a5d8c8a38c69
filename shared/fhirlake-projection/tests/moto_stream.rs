//! End to end on moto: resources written through `Services` over the AWS adapters, the table's
//! real stream records read with the DynamoDB Streams API, handed to the projector in the Lambda
//! event shape, and the Parquet files read back from S3.

mod support;

use std::sync::Arc;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine as _;
use fhirlake_aws::moto::{unique_name, MotoServer, REGION};
use fhirlake_aws::{create_bucket_if_missing, AwsBackend, AwsSettings, S3ObjectStore};
use fhirlake_core::datastores::CreateFhirDatastoreRequest;
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_ports::{ObjectStore, RandomIds, SystemClock};
use fhirlake_projection::{type_prefix, DynamoDbEvent, IgnoreReason, Projector};
use serde_json::{json, Map, Value};
use support::{keys, some, ProjectionFile};

/// Records per invocation, as the event source mapping is configured.
const BATCH_SIZE: usize = 100;

/// A stream attribute in the DynamoDB JSON of Lambda events.
fn attribute(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        other => panic!("fhirlake writes no attribute like {other:?}"),
    }
}

fn image(image: Option<&std::collections::HashMap<String, AttributeValue>>) -> Option<Value> {
    image.map(|attrs| Value::Object(attrs.iter().map(|(k, v)| (k.clone(), attribute(v))).collect::<Map<_, _>>()))
}

/// A DynamoDB Streams record as Lambda's event source mapping delivers it.
fn lambda_record(record: &Record, stream_arn: &str) -> Value {
    let change = record.dynamodb().expect("the stream record");
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.approximate_creation_date_time().map(|t| t.as_secs_f64()),
        "Keys": image(change.keys()),
        "SequenceNumber": change.sequence_number(),
        "SizeBytes": change.size_bytes(),
        "StreamViewType": change.stream_view_type().map(|v| v.as_str()),
    });
    if let Some(new_image) = image(change.new_image()) {
        dynamodb["NewImage"] = new_image;
    }
    if let Some(old_image) = image(change.old_image()) {
        dynamodb["OldImage"] = old_image;
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": record.event_source(),
        "awsRegion": record.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// Every record of the table's stream, shard by shard, in stream order, as Lambda records.
async fn stream_records(server: &MotoServer, table: &str) -> Vec<Value> {
    let streams = aws_sdk_dynamodbstreams::Client::new(&server.sdk_config());
    let listed = streams.list_streams().table_name(table).send().await.expect("list streams");
    let stream_arn = listed.streams().first().and_then(|s| s.stream_arn()).expect("the table has a stream").to_string();
    let described = streams.describe_stream().stream_arn(&stream_arn).send().await.expect("describe stream");
    let shards: Vec<String> = described
        .stream_description()
        .map(|d| d.shards().iter().filter_map(|s| s.shard_id().map(str::to_string)).collect())
        .unwrap_or_default();
    assert!(!shards.is_empty(), "the stream has shards");
    let mut records = Vec::new();
    for shard in shards {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("shard iterator");
        let mut next = iterator.shard_iterator().map(str::to_string);
        while let Some(iterator) = next.take() {
            let page = streams.get_records().shard_iterator(iterator).send().await.expect("get records");
            if page.records().is_empty() {
                break;
            }
            records.extend(page.records().iter().map(|r| lambda_record(r, &stream_arn)));
            next = page.next_shard_iterator().map(str::to_string);
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_stream_of_a_moto_table_becomes_parquet_in_s3() {
    let server = MotoServer::shared();
    let clients = server.clients();
    let settings = AwsSettings {
        table: unique_name("fhirlake-projection"),
        bucket: unique_name("fhirlake-data"),
        object_prefix: None,
        kms_key: format!("alias/{}", unique_name("fhirlake-projection")),
    };
    let key_arn = AwsBackend::init(&clients, &settings).await.expect("init table, bucket and key");
    let aws = AwsBackend::new(&clients, &settings);
    let backends = Backends {
        table: aws.items,
        objects: aws.objects,
        keys: aws.keys,
        buckets: aws.buckets,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    let config = ServiceConfig::new(REGION, "123456789012", "http://localhost");
    let services = Services::new(config, backends);

    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("create datastore");
    let ds = services.datastores.active(&created.datastore_id).await.expect("active datastore");
    let r = &services.resources;
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ørsted", "given": ["Hans"]}], "gender": "male", "birthDate": "1777-08-14"});
    r.update(&ds, "Patient", "p1", patient, None).await.expect("put patient");
    let observation = json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 70.5, "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    r.update(&ds, "Observation", "o1", observation, None).await.expect("put observation");
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7_u8; 400 * 1024]);
    r.update(&ds, "Binary", "b1", json!({"resourceType": "Binary", "id": "b1", "contentType": "image/png", "data": data}), None)
        .await
        .expect("put a binary whose body goes to s3");
    r.delete(&ds, "Patient", "p1", None).await.expect("delete patient");

    let records = stream_records(server, &settings.table).await;
    // The datastore's record (created, then advanced to ACTIVE), four versions, and their
    // history and search index entries (written, and removed once superseded).
    let key_of = |record: &Value| {
        let keys = &record["dynamodb"]["Keys"];
        (keys["pk"]["S"].as_str().unwrap_or("").to_string(), keys["sk"]["S"].as_str().unwrap_or("").to_string())
    };
    let versions = records
        .iter()
        .filter(|r| {
            let (pk, sk) = key_of(r);
            pk.starts_with("r#") && sk.starts_with("v#")
        })
        .count();
    let control = records.iter().filter(|r| key_of(r).0.starts_with("CP#")).count();
    let history = records
        .iter()
        .filter(|r| {
            let pk = key_of(r).0;
            pk.starts_with("ht#") || pk.starts_with("hs#")
        })
        .count();
    assert_eq!((versions, control, history), (4, 2, 4 * 2));

    let projections_bucket = unique_name("fhirlake-projections");
    create_bucket_if_missing(&clients.s3, &projections_bucket).await.expect("projections bucket");
    let output = Arc::new(S3ObjectStore::new(clients.s3.clone(), &projections_bucket, None, Some(key_arn)));
    let projector = Projector::new(services.clone(), output.clone());
    let (mut rows, mut not_versions) = (0, 0);
    for chunk in records.chunks(BATCH_SIZE) {
        let event: DynamoDbEvent = serde_json::from_value(json!({ "Records": chunk })).expect("a Lambda event");
        let report = projector.project(&event).await.expect("projected");
        assert_eq!(report.retry_from, None, "{report:?}");
        assert!(report.skipped.is_empty(), "{report:?}");
        rows += report.rows();
        not_versions += report.ignored.get(&IgnoreReason::NotAVersion).copied().unwrap_or(0);
        not_versions += report.ignored.get(&IgnoreReason::Removed).copied().unwrap_or(0);
    }
    assert_eq!(rows, 4);
    assert_eq!(not_versions, records.len() - 4, "history and index entries, removals and control-plane items are ignored");

    let patient_keys = keys(output.as_ref(), &type_prefix(&ds.id, "Patient")).await;
    assert!(!patient_keys.is_empty() && patient_keys.iter().all(|k| k.contains("/date=") && k.ends_with(".parquet")), "{patient_keys:?}");
    let mut patient_rows: Vec<(i64, bool, Option<Vec<String>>)> = Vec::new();
    for key in &patient_keys {
        let file = ProjectionFile::read(output.get(key).await.expect("patient file"));
        assert!(file.ids().iter().all(|id| id == "p1"));
        let family = file.list("sp_family");
        patient_rows.extend(file.versions().into_iter().zip(file.deleted()).zip(family).map(|((v, d), f)| (v, d, f)));
    }
    patient_rows.sort_by_key(|(v, _, _)| *v);
    assert_eq!(patient_rows, [(1, false, some(&["ørsted"])), (2, true, None)]);

    let observation_keys = keys(output.as_ref(), &type_prefix(&ds.id, "Observation")).await;
    assert_eq!(observation_keys.len(), 1);
    let observations = ProjectionFile::read(output.get(&observation_keys[0]).await.expect("observation file"));
    assert_eq!(observations.list("sp_code"), [some(&["http://loinc.org|29463-7"])]);
    assert_eq!(observations.list("sp_subject"), [some(&["Patient/p1"])]);
    assert_eq!(observations.list("sp_value_quantity"), [some(&["70.5|http://unitsofmeasure.org|kg"])]);

    let binary_keys = keys(output.as_ref(), &type_prefix(&ds.id, "Binary")).await;
    assert_eq!(binary_keys.len(), 1);
    let binaries = ProjectionFile::read(output.get(&binary_keys[0]).await.expect("binary file"));
    let resource = binaries.resources().remove(0).expect("the binary");
    assert_eq!(resource["data"].as_str().map(str::len), Some(data.len()));
}
