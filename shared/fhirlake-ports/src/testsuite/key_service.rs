//! Conformance cases of [`KeyService`]: each checks one part of its contract.

use super::{expect, expect_kind, CaseFuture, CaseResult, Step};
use crate::{KeyService, StorageErrorKind};

/// The second master key id the suite uses by default; backends whose master keys must exist
/// beforehand (KMS) create it, or call
/// [`key_service_suite_with_ids`](super::key_service_suite_with_ids).
pub const OTHER_MASTER_KEY_ID: &str = "alias/fhirlake-testsuite-other";

/// The two distinct master key ids the cases use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyIds {
    /// The main master key id (usually the service's default).
    pub key_id: String,
    /// A second, independent master key id.
    pub other_key_id: String,
}

/// One key service case, boxed so the cases fit in a table.
pub type KeyServiceCase = for<'a> fn(&'a dyn KeyService, &'a MasterKeyIds) -> CaseFuture<'a>;

#[doc(hidden)]
#[macro_export]
macro_rules! __key_service_cases {
    ($($callback:tt)::+; $args:tt) => {
        $($callback)::+! { $args
            data_key_round_trip,
            context_is_bound,
            corrupted_wrapped_key_is_rejected,
            data_keys_are_fresh,
            master_keys_are_independent,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __testsuite_key_case_table {
    (() $($case:ident),* $(,)?) => {
        &[$((stringify!($case), |port, ids| ::std::boxed::Box::pin($case(port, ids)))),*]
    };
}

/// Every key service case, by name, in run order.
pub const CASES: &[(&str, KeyServiceCase)] = crate::__key_service_cases! { crate::__testsuite_key_case_table; () };

/// A generated data key unwraps to the same plaintext under the same id and context.
pub async fn data_key_round_trip(keys: &dyn KeyService, ids: &MasterKeyIds) -> CaseResult {
    expect(!keys.default_key_id().is_empty(), "default key id is empty")?;
    let context = "datastore/0123456789abcdef0123456789abcdef";
    let key = keys.generate_data_key(&ids.key_id, context).await.step("generate")?;
    expect(key.wrapped.as_slice() != key.plaintext.as_slice(), "wrapped key equals its plaintext")?;
    let unwrapped = keys.decrypt_data_key(&ids.key_id, context, &key.wrapped).await.step("decrypt")?;
    expect(*unwrapped == *key.plaintext, "unwrapped key differs from the generated plaintext")
}

/// Unwrapping with another context fails with `Invalid`.
pub async fn context_is_bound(keys: &dyn KeyService, ids: &MasterKeyIds) -> CaseResult {
    let key = keys.generate_data_key(&ids.key_id, "datastore/a").await.step("generate")?;
    for other in ["datastore/b", "datastore/a ", "", "datastore/"] {
        let result = keys.decrypt_data_key(&ids.key_id, other, &key.wrapped).await;
        expect_kind(result.map(|_| ()), StorageErrorKind::Invalid, &format!("decrypt with context {other:?}"))?;
    }
    Ok(())
}

/// A corrupted, truncated or empty wrapped key fails with `Invalid`.
pub async fn corrupted_wrapped_key_is_rejected(keys: &dyn KeyService, ids: &MasterKeyIds) -> CaseResult {
    let context = "datastore/corrupt";
    let key = keys.generate_data_key(&ids.key_id, context).await.step("generate")?;
    let len = key.wrapped.len();
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for index in [0, len / 2, len.saturating_sub(1)] {
        let mut flipped = key.wrapped.clone();
        if let Some(byte) = flipped.get_mut(index) {
            *byte ^= 0x01;
        }
        variants.push((format!("bit flipped at byte {index}"), flipped));
    }
    variants.push(("truncated".into(), key.wrapped[..len.saturating_sub(1)].to_vec()));
    variants.push(("empty".into(), Vec::new()));
    for (what, wrapped) in variants {
        let result = keys.decrypt_data_key(&ids.key_id, context, &wrapped).await;
        expect_kind(result.map(|_| ()), StorageErrorKind::Invalid, &format!("decrypt {what}"))?;
    }
    Ok(())
}

/// Two generated data keys differ, in plaintext and wrapped form.
pub async fn data_keys_are_fresh(keys: &dyn KeyService, ids: &MasterKeyIds) -> CaseResult {
    let first = keys.generate_data_key(&ids.key_id, "datastore/same").await.step("generate first")?;
    let second = keys.generate_data_key(&ids.key_id, "datastore/same").await.step("generate second")?;
    expect(*first.plaintext != *second.plaintext, "two data keys have the same plaintext")?;
    expect(first.wrapped != second.wrapped, "two data keys have the same wrapped form")?;
    expect(*first.plaintext != [0u8; 32], "data key is all zeros")
}

/// A key wrapped under one master key id does not unwrap under another, and each id
/// unwraps its own keys.
pub async fn master_keys_are_independent(keys: &dyn KeyService, ids: &MasterKeyIds) -> CaseResult {
    expect(ids.key_id != ids.other_key_id, "the two master key ids are the same")?;
    let context = "datastore/independent";
    let under_a = keys.generate_data_key(&ids.key_id, context).await.step("generate under the first id")?;
    let under_b = keys.generate_data_key(&ids.other_key_id, context).await.step("generate under the second id")?;
    let result = keys.decrypt_data_key(&ids.other_key_id, context, &under_a.wrapped).await;
    expect_kind(result.map(|_| ()), StorageErrorKind::Invalid, "decrypt a first-id key under the second id")?;
    let result = keys.decrypt_data_key(&ids.key_id, context, &under_b.wrapped).await;
    expect_kind(result.map(|_| ()), StorageErrorKind::Invalid, "decrypt a second-id key under the first id")?;
    let unwrapped = keys.decrypt_data_key(&ids.other_key_id, context, &under_b.wrapped).await.step("decrypt under the second id")?;
    expect(*unwrapped == *under_b.plaintext, "second-id key unwraps to another plaintext")
}
