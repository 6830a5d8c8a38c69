//! The adapter set and the services built over it.

use std::sync::Arc;

use fhirlake_ports::{Clock, IdSource, ItemTable, KeyService, ObjectStore, RandomIds, SystemClock};

use crate::datastores::DatastoreService;
use crate::resources::ResourceService;
use crate::search::SearchService;
use crate::ServiceConfig;

/// One implementation of every port: the embedded adapters locally, the AWS ones in the cloud.
#[derive(Clone)]
pub struct Backends {
    /// The single item table.
    pub table: Arc<dyn ItemTable>,
    /// Object storage for large bodies and job files.
    pub objects: Arc<dyn ObjectStore>,
    /// The key service for envelope encryption.
    pub keys: Arc<dyn KeyService>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdSource>,
}

impl Backends {
    /// The given storage adapters with the system clock and random ids, as every entrypoint
    /// (`fhirlake serve`, the Lambda functions) runs them.
    pub fn with_system_clock(table: Arc<dyn ItemTable>, objects: Arc<dyn ObjectStore>, keys: Arc<dyn KeyService>) -> Self {
        Backends { table, objects, keys, clock: Arc::new(SystemClock), ids: Arc::new(RandomIds) }
    }
}

/// Every service, built once at start-up and shared by all requests.
#[derive(Clone)]
pub struct Services {
    /// Deployment settings.
    pub config: Arc<ServiceConfig>,
    /// The HealthLake control plane.
    pub datastores: DatastoreService,
    /// The FHIR interactions.
    pub resources: ResourceService,
    /// FHIR search.
    pub search: SearchService,
    clock: Arc<dyn Clock>,
}

impl Services {
    /// Builds the services over `backends`.
    pub fn new(config: ServiceConfig, backends: Backends) -> Self {
        let config = Arc::new(config);
        let datastores = DatastoreService::new(config.clone(), backends.clone());
        let clock = backends.clock.clone();
        let resources = ResourceService::new(backends.clone());
        let search = SearchService::new(backends, resources.clone());
        Services { config, datastores, resources, search, clock }
    }

    /// The clock every service uses.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }
}
