//! `fhirlake serve`: wires the embedded or the AWS adapters into the shared router and serves it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fhirlake_api::{router, AppState, AuditEventResources, BearerAuthenticator, OneIntrospector, RequestAuthenticator};
use fhirlake_core::{Backends, ExportDestination, ServiceConfig, Services};
use fhirlake_embedded::JsonLinesAuditLog;
use fhirlake_ports::audit::AuditLog;
use fhirlake_smart::HttpIntrospector;

use crate::aws_args::AwsArgs;
use crate::credentials;

/// Where `fhirlake serve` keeps its data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// The embedded store under `--data-dir`: no cloud needed.
    Embedded,
    /// DynamoDB, S3 and KMS through the standard AWS configuration.
    Aws,
}

/// Flags of `fhirlake serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "FHIRLAKE_LISTEN")]
    listen: SocketAddr,
    /// Where the data lives.
    #[arg(long, value_enum, default_value = "embedded", env = "FHIRLAKE_BACKEND")]
    backend: Backend,
    /// The AWS resources (with `--backend aws`).
    #[command(flatten)]
    aws: AwsArgs,
    /// Directory holding the embedded store, objects, keys and generated credentials (with
    /// `--backend aws`, only the generated credentials).
    #[arg(long, default_value = ".fhirlake", env = "FHIRLAKE_DATA_DIR")]
    data_dir: PathBuf,
    /// AWS region this server answers for (ARNs and SigV4 scope).
    #[arg(long, default_value = "us-east-1", env = "FHIRLAKE_REGION")]
    region: String,
    /// 12-digit account id used in ARNs.
    #[arg(long, default_value = "000000000000", env = "FHIRLAKE_ACCOUNT_ID")]
    account_id: String,
    /// Base URL clients use to reach this server (default: http://<listen>).
    #[arg(long, env = "FHIRLAKE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest page of a search or history read; a larger `_count` is reduced to it.
    #[arg(long, default_value = "1000", env = "FHIRLAKE_SEARCH_MAX_COUNT", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    search_max_count: u64,
    /// Bytes of NDJSON input per import chunk (the unit of work and of retry).
    #[arg(long, default_value = "8388608", env = "FHIRLAKE_JOB_CHUNK_BYTES", value_parser = clap::value_parser!(u64).range(1024..))]
    job_chunk_bytes: u64,
    /// Import and export chunks run at once (default: twice the number of CPUs).
    #[arg(long, env = "FHIRLAKE_JOB_PARALLELISM", value_parser = clap::value_parser!(u64).range(1..=256))]
    job_parallelism: Option<u64>,
    /// Where a FHIR `$export` kick-off without a destination (`GET [base]/$export`) writes its
    /// files, which the server then serves at `[base]/export/{job}/{file}`. Embedded default:
    /// `s3://fhirlake-exports/` (`<data-dir>/s3/fhirlake-exports/`); with `--backend aws`, no
    /// default (such kick-offs are refused).
    #[arg(long, env = "FHIRLAKE_EXPORT_S3_URI")]
    export_s3_uri: Option<String>,
    /// The KMS key of those files (default: the deployment's key, `--kms-key`; embedded:
    /// `alias/fhirlake`, which the local buckets record but do not use).
    #[arg(long, env = "FHIRLAKE_EXPORT_KMS_KEY_ID")]
    export_kms_key_id: Option<String>,
    /// The role recorded as those jobs' DataAccessRoleArn (default
    /// `arn:aws:iam::<account>:role/fhirlake-export`).
    #[arg(long, env = "FHIRLAKE_EXPORT_ROLE_ARN")]
    export_role_arn: Option<String>,
    /// Where tokens of datastores with an IdpLambdaArn are judged: an HTTP endpoint that takes
    /// HealthLake's token-introspection event as a JSON POST and answers as the Lambda would
    /// (https, or http on loopback; 1 s budget). Without it such tokens are answered 503.
    #[arg(long, env = "FHIRLAKE_TOKEN_INTROSPECTION_URL")]
    token_introspection_url: Option<String>,
    /// Also store each data-plane audit record as a FHIR AuditEvent resource in the datastore it
    /// concerns (one more write per request); the audit log file stays the authoritative trail.
    #[arg(long, env = "FHIRLAKE_AUDIT_EVENTS")]
    audit_events: bool,
}

/// The embedded store's default export bucket, under `<data-dir>/s3/`.
const EMBEDDED_EXPORT_BUCKET: &str = "fhirlake-exports";

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let (backends, export_defaults) = match args.backend {
        Backend::Embedded => {
            let embedded = fhirlake_embedded::EmbeddedBackend::open(&args.data_dir).context("opening the embedded store")?;
            let bucket = args.data_dir.join("s3").join(EMBEDDED_EXPORT_BUCKET);
            std::fs::create_dir_all(&bucket).with_context(|| format!("creating the export bucket {}", bucket.display()))?;
            let defaults = (Some(format!("s3://{EMBEDDED_EXPORT_BUCKET}/")), "alias/fhirlake".to_string());
            (Backends::with_system_clock(embedded.items, embedded.objects, embedded.keys, embedded.buckets), defaults)
        }
        Backend::Aws => {
            let settings = args.aws.settings();
            tracing::info!(table = %settings.table, bucket = %settings.bucket, kms_key = %settings.kms_key, "using the aws backend");
            let clients = fhirlake_aws::AwsClients::from_env().await;
            fhirlake_aws::AwsBackend::check(&clients, &settings)
                .await
                .map_err(|e| anyhow::anyhow!("{e} (run `fhirlake aws init` to create the table, bucket and key)"))?;
            let aws = fhirlake_aws::AwsBackend::new(&clients, &settings);
            let defaults = (None, settings.kms_key.clone());
            (Backends::with_system_clock(aws.items, aws.objects, aws.keys, aws.buckets), defaults)
        }
    };
    let public_base_url = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen)).trim_end_matches('/').to_string();
    let config = ServiceConfig::new(args.region.clone(), args.account_id.clone(), public_base_url.clone())
        .with_max_page_size(usize::try_from(args.search_max_count).unwrap_or(ServiceConfig::DEFAULT_MAX_PAGE_SIZE))
        .with_job_chunk_bytes(args.job_chunk_bytes);
    let config = match args.job_parallelism {
        Some(n) => config.with_job_parallelism(usize::try_from(n).unwrap_or(1)),
        None => config,
    };
    let (default_uri, default_key) = export_defaults;
    let config = match args.export_s3_uri.clone().or(default_uri) {
        Some(s3_uri) => config.with_export_destination(ExportDestination::new(
            s3_uri,
            args.export_kms_key_id.clone().unwrap_or(default_key),
            args.export_role_arn.clone(),
            &args.account_id,
        )),
        None => config,
    };
    let store = credentials::load_or_generate(&args.data_dir)?;
    let services = Services::new(config, backends);
    if let Some(runner) = &services.runner {
        let resumed = runner.resume().await.context("resuming unfinished jobs")?;
        if resumed > 0 {
            tracing::info!(jobs = resumed, "resumed unfinished import and export jobs");
        }
    }
    let mut bearer = BearerAuthenticator::over_https().context("loading the trusted root certificates for SMART token keys")?;
    if let Some(url) = &args.token_introspection_url {
        let introspector = HttpIntrospector::new(url).with_context(|| format!("--token-introspection-url {url}"))?;
        bearer = bearer.with_introspection(Arc::new(OneIntrospector(Arc::new(introspector))));
    }
    let audit_path = args.data_dir.join("audit").join("audit.jsonl");
    let audit = Arc::new(JsonLinesAuditLog::open(&audit_path).with_context(|| format!("opening the audit log {}", audit_path.display()))?);
    let audit_log: Arc<dyn AuditLog> = match args.audit_events {
        true => Arc::new(AuditEventResources::new(audit.clone(), services.clone())),
        false => audit.clone(),
    };
    let state = Arc::new(AppState {
        services,
        authenticator: RequestAuthenticator::sigv4(&args.region, Arc::new(store)),
        bearer,
        audit: audit_log,
    });

    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, url = %public_base_url, backend = ?args.backend, data_dir = %args.data_dir.display(), region = %args.region, "fhirlake is serving");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await.context("serving")?;
    if let Err(e) = audit.flush().await {
        tracing::error!(error = %e, "the audit log could not be synced at shutdown");
    }
    tracing::info!("fhirlake stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
