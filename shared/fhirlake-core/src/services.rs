//! The adapter set and the services built over it.

use std::sync::Arc;

use fhirlake_ports::{Buckets, Clock, IdSource, ItemTable, KeyService, ObjectStore, RandomIds, SystemClock, Workflows};

use crate::conditional::ConditionalWrites;
use crate::datastores::DatastoreService;
use crate::jobs::{InProcessRunner, JobService, JobSteps};
use crate::resources::ResourceService;
use crate::search::SearchService;
use crate::transaction::TransactionService;
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
    /// The buckets jobs read their input from and write their output to.
    pub buckets: Arc<dyn Buckets>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdSource>,
}

impl Backends {
    /// The given storage adapters with the system clock and random ids, as every entrypoint
    /// (`fhirlake serve`, the Lambda functions) runs them.
    pub fn with_system_clock(
        table: Arc<dyn ItemTable>,
        objects: Arc<dyn ObjectStore>,
        keys: Arc<dyn KeyService>,
        buckets: Arc<dyn Buckets>,
    ) -> Self {
        Backends { table, objects, keys, buckets, clock: Arc::new(SystemClock), ids: Arc::new(RandomIds) }
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
    /// Conditional create, update, delete and patch.
    pub conditional: ConditionalWrites,
    /// The writes of transaction Bundles.
    pub transactions: TransactionService,
    /// Import and export jobs.
    pub jobs: JobService,
    /// The in-process job runner, when jobs run in this process (not under Step Functions).
    pub runner: Option<InProcessRunner>,
    clock: Arc<dyn Clock>,
}

impl Services {
    /// Builds the services over `backends`.
    ///
    /// Jobs run in this process ([`InProcessRunner`]); see [`Services::with_workflows`].
    pub fn new(config: ServiceConfig, backends: Backends) -> Self {
        Self::build(config, backends, None)
    }

    /// Builds the services over `backends`, starting jobs through `workflows` (the Step
    /// Functions state machines in AWS).
    pub fn with_workflows(config: ServiceConfig, backends: Backends, workflows: Arc<dyn Workflows>) -> Self {
        Self::build(config, backends, Some(workflows))
    }

    fn build(config: ServiceConfig, backends: Backends, workflows: Option<Arc<dyn Workflows>>) -> Self {
        let config = Arc::new(config);
        let datastores = DatastoreService::new(config.clone(), backends.clone());
        let clock = backends.clock.clone();
        let resources = ResourceService::new(backends.clone());
        let search = SearchService::new(backends.clone(), resources.clone());
        let conditional = ConditionalWrites::new(resources.clone(), search.clone());
        let transactions = TransactionService::new(backends.clone(), resources.clone(), search.clone());
        let steps = JobSteps::new(backends, resources.clone(), search.clone(), datastores.clone(), config.job_chunk_bytes);
        let (workflows, runner) = match workflows {
            Some(workflows) => (workflows, None),
            None => {
                let runner = InProcessRunner::new(steps.clone(), config.job_parallelism);
                (Arc::new(runner.clone()) as Arc<dyn Workflows>, Some(runner))
            }
        };
        let jobs = JobService::new(steps, workflows);
        Services { config, datastores, resources, search, conditional, transactions, jobs, runner, clock }
    }

    /// The clock every service uses.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }
}
