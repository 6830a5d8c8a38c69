//! FHIR R4 semantics over JSON resources. Pure: no IO, no AWS types.
#![warn(missing_docs)]

pub mod bundle;
pub mod capability;
pub mod outcome;
pub mod resource;
#[rustfmt::skip]
mod codegen;
pub mod fhirpath;
mod members;
pub mod patch;
pub mod registry;
pub mod search;
pub mod transaction;
pub mod validate;
