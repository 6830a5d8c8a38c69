//! Settings every entrypoint passes to the services.

/// Deployment-wide settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The AWS region this deployment answers for (used in ARNs).
    pub region: String,
    /// The 12-digit account id used in ARNs.
    pub account_id: String,
    /// The public base URL clients reach the service at, without a trailing slash
    /// (e.g. `http://127.0.0.1:8080`); datastore endpoints are built from it.
    pub public_base_url: String,
    /// The largest page a search or history read returns; a larger `_count` is reduced to it.
    pub max_page_size: usize,
    /// Bytes of NDJSON input per import chunk.
    pub job_chunk_bytes: u64,
    /// Chunks the in-process job runner runs at once (default: twice the CPUs, so that one
    /// chunk prepares while another waits for its writes).
    pub job_parallelism: usize,
    /// Where a FHIR `$export` kick-off that names no destination (a `GET`, as the Bulk Data IG
    /// writes it) puts its files; the server then serves them itself. `None`: such a kick-off
    /// is refused.
    pub export_destination: Option<ExportDestination>,
}

/// The output of `$export` kick-offs that name none: an S3 location, its KMS key and the role
/// recorded on the job (as StartFHIRExportJob would take them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDestination {
    /// `s3://bucket/prefix`.
    pub s3_uri: String,
    /// The KMS key the files are encrypted under.
    pub kms_key_id: String,
    /// The role recorded as the job's DataAccessRoleArn.
    pub data_access_role_arn: String,
}

impl ExportDestination {
    /// A destination in account `account_id`; without a role, the deployment's own name for
    /// it, `arn:aws:iam::{account_id}:role/fhirlake-export`, is recorded.
    pub fn new(s3_uri: String, kms_key_id: String, data_access_role_arn: Option<String>, account_id: &str) -> Self {
        let data_access_role_arn = data_access_role_arn.unwrap_or_else(|| format!("arn:aws:iam::{account_id}:role/fhirlake-export"));
        ExportDestination { s3_uri, kms_key_id, data_access_role_arn }
    }
}

impl ServiceConfig {
    /// The default [`Self::max_page_size`] (HealthLake's is 100).
    pub const DEFAULT_MAX_PAGE_SIZE: usize = 1000;
    /// The largest [`Self::max_page_size`] that may be configured.
    pub const MAX_PAGE_SIZE_LIMIT: usize = 10_000;

    /// Settings with the default page size limit.
    pub fn new(region: impl Into<String>, account_id: impl Into<String>, public_base_url: impl Into<String>) -> Self {
        ServiceConfig {
            region: region.into(),
            account_id: account_id.into(),
            public_base_url: public_base_url.into(),
            max_page_size: Self::DEFAULT_MAX_PAGE_SIZE,
            job_chunk_bytes: crate::jobs::DEFAULT_CHUNK_BYTES,
            job_parallelism: 2 * std::thread::available_parallelism().map_or(2, usize::from),
            export_destination: None,
        }
    }

    /// With a destination for `$export` kick-offs that name none.
    pub fn with_export_destination(mut self, destination: ExportDestination) -> Self {
        self.export_destination = Some(destination);
        self
    }

    /// With another import chunk size (at least 1 KiB).
    pub fn with_job_chunk_bytes(mut self, bytes: u64) -> Self {
        self.job_chunk_bytes = bytes.max(1024);
        self
    }

    /// With another number of chunks the in-process runner runs at once (at least 1).
    pub fn with_job_parallelism(mut self, parallelism: usize) -> Self {
        self.job_parallelism = parallelism.max(1);
        self
    }

    /// With another page size limit, kept within 1..=[`Self::MAX_PAGE_SIZE_LIMIT`].
    pub fn with_max_page_size(mut self, max_page_size: usize) -> Self {
        self.max_page_size = max_page_size.clamp(1, Self::MAX_PAGE_SIZE_LIMIT);
        self
    }

    /// The data-plane endpoint of a datastore: `{base}/datastore/{id}/r4/`.
    pub fn datastore_endpoint(&self, datastore_id: &str) -> String {
        format!("{}/datastore/{}/r4/", self.public_base_url, datastore_id)
    }
}
