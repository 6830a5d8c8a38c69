//! Time and identifiers, injectable so tests are deterministic.

use chrono::{DateTime, Utc};
use rand::RngCore;

/// The current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A source of fresh identifiers.
pub trait IdSource: Send + Sync + 'static {
    /// A new FHIR logical id for a server-assigned resource (a lowercase UUID).
    fn resource_id(&self) -> String;
    /// A new 32-character lowercase hex id (datastores, jobs).
    fn hex32(&self) -> String;
}

/// Random identifiers from the operating system's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn resource_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
    fn hex32(&self) -> String {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    }
}
