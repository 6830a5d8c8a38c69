//! fhirlake's services: the HealthLake control plane and the FHIR interactions, written once
//! against the ports and shared by every entrypoint (Lambda functions and `fhirlake serve`).
#![warn(missing_docs)]

pub mod access;
mod bulk;
mod commit_record;
pub mod conditional;
mod config;
mod crypto;
pub mod datastores;
mod error;
pub mod index;
pub mod jobs;
pub mod layout;
pub mod operation;
pub mod resources;
pub mod search;
mod services;
pub mod transaction;

pub use config::{ExportDestination, ServiceConfig};
pub use error::{CoreError, CoreResult};
pub use services::{Backends, Services};
