//! The `stream-projector` Lambda function: the table's DynamoDB stream in, Parquet search
//! projections out (`fhirlake_projection::Projector`). Configuration: FHIRLAKE_TABLE,
//! FHIRLAKE_BUCKET, FHIRLAKE_OBJECT_PREFIX, FHIRLAKE_KMS_KEY, FHIRLAKE_PROJECTION_BUCKET
//! (default: FHIRLAKE_BUCKET), AWS_REGION, FHIRLAKE_ACCOUNT_ID, FHIRLAKE_LOG or RUST_LOG.

use std::sync::Arc;

use fhirlake_aws::{AwsBackend, AwsClients, AwsSettings, S3ObjectStore};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_projection::{DynamoDbEvent, Projector, PROJECTION_BUCKET_ENV};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhirlake_lambda::init_tracing();
    let settings = AwsSettings::from_env_strict()?;
    let clients = AwsClients::from_env().await;
    let aws = AwsBackend::new(&clients, &settings);
    let bucket = std::env::var(PROJECTION_BUCKET_ENV).ok().filter(|b| !b.is_empty()).unwrap_or_else(|| settings.bucket.clone());
    let output = S3ObjectStore::new(clients.s3.clone(), bucket, settings.object_prefix.clone(), Some(settings.kms_key.clone()));
    let backends = Backends::with_system_clock(aws.items, aws.objects, aws.keys, aws.buckets);
    // The projector builds no ARNs or endpoint URLs; these only complete the services' settings.
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let config = ServiceConfig::new(env("AWS_REGION"), env("FHIRLAKE_ACCOUNT_ID"), env("FHIRLAKE_PUBLIC_URL"));
    let projector = Arc::new(Projector::new(Services::new(config, backends), Arc::new(output)));
    run(service_fn(move |event: LambdaEvent<DynamoDbEvent>| {
        let projector = projector.clone();
        async move { projector.handle(event.payload).await.map_err(Error::from) }
    }))
    .await
}
