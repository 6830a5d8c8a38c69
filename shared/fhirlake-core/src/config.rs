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
}

impl ServiceConfig {
    /// The data-plane endpoint of a datastore: `{base}/datastore/{id}/r4/`.
    pub fn datastore_endpoint(&self, datastore_id: &str) -> String {
        format!("{}/datastore/{}/r4/", self.public_base_url, datastore_id)
    }
}
