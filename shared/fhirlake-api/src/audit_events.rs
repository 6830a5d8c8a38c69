//! The optional second home of the audit trail: every data-plane record also stored as a FHIR
//! R4 AuditEvent resource in the datastore it concerns (`fhirlake serve --audit-events`,
//! `FHIRLAKE_AUDIT_EVENTS=true` in Lambda), where FHIR clients can search it
//! (`AuditEvent?entity=Patient/123`, `AuditEvent?agent=…`).
//!
//! The log the records are first appended to stays the authoritative, append-only trail; the
//! resource is written after it, through the same service as any create (so it is validated,
//! versioned, indexed and encrypted), and awaited, so a Lambda function is not frozen with the
//! write half done. That is one more write per request: the option is off by default. A record
//! of a datastore that does not exist (or no longer) has nowhere to go and is only logged.

use std::sync::Arc;

use async_trait::async_trait;
use fhirlake_core::Services;
use fhirlake_ports::audit::{AuditLog, AuditRecord};

/// An [`AuditLog`] that appends to `log` and then stores data-plane records as AuditEvents.
pub struct AuditEventResources {
    log: Arc<dyn AuditLog>,
    services: Services,
    failures: std::sync::atomic::AtomicU64,
}

impl AuditEventResources {
    /// Appends every record to `log`, and stores each data-plane record as an AuditEvent through
    /// `services`.
    pub fn new(log: Arc<dyn AuditLog>, services: Services) -> Self {
        AuditEventResources { log, services, failures: Default::default() }
    }
}

#[async_trait]
impl AuditLog for AuditEventResources {
    async fn append(&self, record: &AuditRecord) {
        self.log.append(record).await;
        let Some(datastore_id) = record.datastore_id.as_deref().filter(|_| record.plane == "data") else { return };
        let Ok(ds) = self.services.datastores.active(datastore_id).await else { return };
        if let Err(e) = self.services.resources.create(&ds, "AuditEvent", record.to_audit_event()).await {
            self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(request_id = %record.request_id, error = %e, "an audit record could not be stored as an AuditEvent");
        }
    }

    fn failures(&self) -> u64 {
        self.log.failures() + self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}
