//! The ports: the small set of traits fhirlake's domain needs from the outside world.
//!
//! ```text
//!   domain (fhirlake-core) ──uses──▶ ItemTable · ObjectStore · Buckets · KeyService · Workflows · Clock · IdSource
//!                                          ▲              ▲            ▲
//!                     embedded adapter ────┘  aws adapter ┘  memory ───┘ (tests)
//! ```
//!
//! Every trait is `Send + Sync + 'static` and object safe, so services hold `Arc<dyn Trait>`.
//! Contracts are written on each method; adapters are checked against them by the one
//! conformance suite in [`testsuite`] (feature `testsuite`). [`audit`] is the audit trail's port, used by the router.
#![warn(missing_docs)]

pub mod audit;
mod buckets;
mod clock;
mod error;
mod item_table;
mod key_service;
pub mod key_wrap;
pub mod limits;
pub mod memory;
mod object_store;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod workflows;

pub use audit::{audit_time, AuditLog, AuditOutcome, AuditRecord, MemoryAuditLog, StdoutAuditLog};
pub use buckets::{Buckets, MemoryBuckets};
pub use clock::{Clock, IdSource, RandomIds, SystemClock};
pub use error::{StorageError, StorageErrorKind, StorageResult};
pub use item_table::{AttrValue, Attrs, BatchWrite, Condition, Item, ItemTable, Key, Query, QueryPage, SkRange, Write, MAX_TRANSACT_ITEMS};
pub use key_service::{DataKey, KeyService};
pub use object_store::{
    check_part_list, check_part_number, check_part_order, ObjectList, ObjectMeta, ObjectStore, ObjectWriter, Upload, UploadedPart,
    MAX_PART_NUMBER, MIN_PART_BYTES,
};
pub use workflows::Workflows;
