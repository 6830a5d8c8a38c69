//! The storage conformance suite shared by every adapter.
//!
//! Each port has a module of small, named cases (async functions taking the port as a trait
//! object and returning `Err(message)` on the first broken expectation) and a suite function
//! that runs them all:
//!
//! - [`item_table_suite`] over [`item_table::CASES`],
//! - [`object_store_suite`] over [`object_store::CASES`],
//! - [`key_service_suite`] over [`key_service::CASES`].
//!
//! An adapter crate can either call a suite function from one test, or expand every case into
//! its own `#[tokio::test]` with [`item_table_tests!`](crate::item_table_tests),
//! [`object_store_tests!`](crate::object_store_tests) and
//! [`key_service_tests!`](crate::key_service_tests):
//!
//! ```text
//! mod memory {
//!     use fhirlake_ports::memory::MemoryItemTable;
//!     // The expression yields `(guard, port)`: the guard (a temp dir, a server) lives as long as the test.
//!     fhirlake_ports::item_table_tests!(async { ((), MemoryItemTable::new()) });
//! }
//! ```
//!
//! Every case writes under a fresh random namespace (partition keys and object keys start with
//! `fhirlake-testsuite/<random>/<case>/`), so cases can share one table or bucket, run in
//! parallel, and run again against a store that kept earlier runs' data.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use rand::RngCore;

use crate::{ItemTable, KeyService, ObjectStore, StorageErrorKind, StorageResult};

pub mod item_table;
pub mod key_service;
pub mod object_store;

/// What a case returns: `Err` carries a message describing the broken expectation.
pub type CaseResult = Result<(), String>;

/// A boxed case future borrowing the port under test.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// The cases that failed in one suite run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteFailure {
    /// `(case name, message)` for every failed case, in run order.
    pub failures: Vec<(&'static str, String)>,
}

impl fmt::Display for SuiteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} conformance case(s) failed", self.failures.len())?;
        for (case, message) in &self.failures {
            write!(f, "\n  case `{case}`: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SuiteFailure {}

/// Runs every item table case against `table`, reporting every failure.
pub async fn item_table_suite(table: &dyn ItemTable) -> Result<(), SuiteFailure> {
    let mut failures = Vec::new();
    for (name, case) in item_table::CASES {
        if let Err(message) = case(table).await {
            failures.push((*name, message));
        }
    }
    finish(failures)
}

/// Runs every object store case against `store`, reporting every failure.
pub async fn object_store_suite(store: &dyn ObjectStore) -> Result<(), SuiteFailure> {
    let mut failures = Vec::new();
    for (name, case) in object_store::CASES {
        if let Err(message) = case(store).await {
            failures.push((*name, message));
        }
    }
    finish(failures)
}

/// Runs every key service case against `keys`, using its default master key id and
/// [`key_service::OTHER_MASTER_KEY_ID`] as the second, independent master key.
pub async fn key_service_suite(keys: &dyn KeyService) -> Result<(), SuiteFailure> {
    key_service_suite_with_ids(keys, &keys.default_key_id(), key_service::OTHER_MASTER_KEY_ID).await
}

/// Runs every key service case against `keys` with two existing, distinct master key ids
/// (for backends where master keys must be created first, such as KMS).
pub async fn key_service_suite_with_ids(keys: &dyn KeyService, key_id: &str, other_key_id: &str) -> Result<(), SuiteFailure> {
    let ids = key_service::MasterKeyIds { key_id: key_id.to_string(), other_key_id: other_key_id.to_string() };
    let mut failures = Vec::new();
    for (name, case) in key_service::CASES {
        if let Err(message) = case(keys, &ids).await {
            failures.push((*name, message));
        }
    }
    finish(failures)
}

fn finish(failures: Vec<(&'static str, String)>) -> Result<(), SuiteFailure> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(SuiteFailure { failures })
    }
}

/// A fresh random namespace for one case: every key a case writes starts with it.
#[derive(Debug, Clone)]
pub struct Namespace(String);

impl Namespace {
    /// `fhirlake-testsuite/<16 random hex digits>/<case>`.
    pub fn new(case: &str) -> Self {
        let mut random = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut random);
        Namespace(format!("fhirlake-testsuite/{}/{case}", hex::encode(random)))
    }

    /// `<namespace>/<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }

    /// The namespace itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Adds a step description to a port error, turning it into a case failure message.
pub(crate) trait Step<T> {
    /// `Err(e)` becomes `Err("<what>: <e>")`.
    fn step(self, what: &str) -> Result<T, String>;
}

impl<T> Step<T> for StorageResult<T> {
    fn step(self, what: &str) -> Result<T, String> {
        self.map_err(|error| format!("{what}: unexpected error {error}"))
    }
}

/// Fails unless `result` is an error of `kind`.
pub(crate) fn expect_kind<T: fmt::Debug>(result: StorageResult<T>, kind: StorageErrorKind, what: &str) -> CaseResult {
    match result {
        Err(error) if error.kind == kind => Ok(()),
        Err(error) => Err(format!("{what}: expected a {kind:?} error, got {error}")),
        Ok(value) => Err(format!("{what}: expected a {kind:?} error, got Ok({value:?})")),
    }
}

/// Fails with `what` unless `left == right`.
pub(crate) fn expect_eq<T: PartialEq + fmt::Debug>(left: T, right: T, what: &str) -> CaseResult {
    if left == right {
        Ok(())
    } else {
        Err(format!("{what}: expected {right:?}, got {left:?}"))
    }
}

/// Fails with `what` unless `condition` holds.
pub(crate) fn expect(condition: bool, what: impl Into<String>) -> CaseResult {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Polls every future concurrently on the current task and returns their outputs in order.
///
/// The suite borrows the port (`&dyn`), so it cannot `tokio::spawn`; adapters that do their
/// work on other threads (blocking pools, network) still run these futures in parallel.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Expands every item table case into a named `#[tokio::test]` (multi-threaded runtime).
///
/// The argument is an expression whose `.await` yields `(guard, table)`, where `table` is a
/// concrete [`ItemTable`](crate::ItemTable) and `guard` anything that must outlive the test
/// (a temporary directory, a server handle, or `()`). The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! item_table_tests {
    ($setup:expr) => {
        $crate::__item_table_cases! { $crate::__testsuite_expand_tests; (item_table, $setup) }
    };
}

/// Expands every object store case into a named `#[tokio::test]`; see
/// [`item_table_tests!`](crate::item_table_tests) for the argument.
#[macro_export]
macro_rules! object_store_tests {
    ($setup:expr) => {
        $crate::__object_store_cases! { $crate::__testsuite_expand_tests; (object_store, $setup) }
    };
}

/// Expands every key service case into a named `#[tokio::test]`, using the port's default key
/// id and [`OTHER_MASTER_KEY_ID`](crate::testsuite::key_service::OTHER_MASTER_KEY_ID); see
/// [`item_table_tests!`](crate::item_table_tests) for the argument.
#[macro_export]
macro_rules! key_service_tests {
    ($setup:expr) => {
        $crate::__key_service_cases! { $crate::__testsuite_expand_key_tests; ($setup) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __testsuite_expand_tests {
    (($module:ident, $setup:expr) $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_guard, port) = $setup.await;
                if let Err(message) = $crate::testsuite::$module::$case(&port).await {
                    panic!("{} case `{}`: {}", stringify!($module), stringify!($case), message);
                }
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __testsuite_expand_key_tests {
    (($setup:expr) $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_guard, port) = $setup.await;
                let ids = $crate::testsuite::key_service::MasterKeyIds {
                    key_id: $crate::KeyService::default_key_id(&port),
                    other_key_id: $crate::testsuite::key_service::OTHER_MASTER_KEY_ID.to_string(),
                };
                if let Err(message) = $crate::testsuite::key_service::$case(&port, &ids).await {
                    panic!("key_service case `{}`: {}", stringify!($case), message);
                }
            }
        )*
    };
}
