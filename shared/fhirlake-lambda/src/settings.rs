//! What the functions read from their environment, once, at cold start.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `AWS_REGION` | all | the region (set by Lambda): ARNs, SigV4 scope |
//! | `FHIRLAKE_ACCOUNT_ID` | fhir-api, control-plane, job steps | the 12-digit account id in ARNs |
//! | `FHIRLAKE_PUBLIC_URL` | fhir-api, control-plane, job steps | optional base URL of the API; when unset, `https://{requestContext.domainName}` of the first request (job steps: none needed) |
//! | `FHIRLAKE_AUTH_MODE` | fhir-api, control-plane | `healthlake` (default): verify SigV4 for `healthlake`; `iam`: trust API Gateway's `AWS_IAM` authorizer |
//! | `FHIRLAKE_ACCESS_KEYS_SECRET` | all in `healthlake` mode, authorizer | the Secrets Manager secret holding the access key pair |
//! | `FHIRLAKE_SEARCH_MAX_COUNT` | fhir-api | optional largest page of a search or history (`_count` is reduced to it); default 1000, at most 10000 |
//! | `FHIRLAKE_IMPORT_STATE_MACHINE_ARN`, `FHIRLAKE_EXPORT_STATE_MACHINE_ARN` | fhir-api, control-plane | optional, both or neither: bulk jobs start executions of these Step Functions state machines ([`WorkflowSettings`]); when unset, jobs run in the function's process (development only: the process ends with the invocation) |
//! | `FHIRLAKE_EXPORT_S3_URI`, `FHIRLAKE_EXPORT_KMS_KEY_ID`, `FHIRLAKE_EXPORT_ROLE_ARN` | fhir-api | optional: where a `$export` kick-off naming no destination (`GET`) writes the files the API then serves; the key defaults to `FHIRLAKE_KMS_KEY`, the role to `arn:aws:iam::{account}:role/fhirlake-export`; unset: such kick-offs are refused |
//! | `FHIRLAKE_TABLE`, `FHIRLAKE_BUCKET`, `FHIRLAKE_OBJECT_PREFIX`, `FHIRLAKE_KMS_KEY` | fhir-api, control-plane, job steps | the data's resources ([`AwsSettings`]) |
//! | `FHIRLAKE_LOG`, else `RUST_LOG` | all | log filter ([`crate::init_tracing`]) |

use std::str::FromStr;
use std::time::Duration;

use fhirlake_aws::AwsSettings;
use fhirlake_core::{ExportDestination, ServiceConfig};

use crate::LambdaError;

/// Environment variable holding the region (Lambda sets it).
pub const REGION_ENV: &str = "AWS_REGION";
/// Environment variable holding the account id used in ARNs.
pub const ACCOUNT_ID_ENV: &str = "FHIRLAKE_ACCOUNT_ID";
/// Environment variable holding the optional public base URL.
pub const PUBLIC_URL_ENV: &str = "FHIRLAKE_PUBLIC_URL";
/// Environment variable selecting the [`AuthMode`].
pub const AUTH_MODE_ENV: &str = "FHIRLAKE_AUTH_MODE";
/// Environment variable naming the Secrets Manager secret with the access key pair.
pub const ACCESS_KEYS_SECRET_ENV: &str = "FHIRLAKE_ACCESS_KEYS_SECRET";
/// Environment variable holding the largest page size of searches and history.
pub const SEARCH_MAX_COUNT_ENV: &str = "FHIRLAKE_SEARCH_MAX_COUNT";
/// `true`: data-plane audit records are also stored as FHIR AuditEvent resources.
pub const AUDIT_EVENTS_ENV: &str = "FHIRLAKE_AUDIT_EVENTS";
/// Environment variable holding the ARN of the bulk import state machine.
pub const IMPORT_STATE_MACHINE_ARN_ENV: &str = "FHIRLAKE_IMPORT_STATE_MACHINE_ARN";
/// Environment variable holding the ARN of the bulk export state machine.
pub const EXPORT_STATE_MACHINE_ARN_ENV: &str = "FHIRLAKE_EXPORT_STATE_MACHINE_ARN";
/// Where `$export` kick-offs without a destination write their files.
pub const EXPORT_S3_URI_ENV: &str = "FHIRLAKE_EXPORT_S3_URI";
/// The KMS key of those files.
pub const EXPORT_KMS_KEY_ID_ENV: &str = "FHIRLAKE_EXPORT_KMS_KEY_ID";
/// The role recorded on those jobs.
pub const EXPORT_ROLE_ARN_ENV: &str = "FHIRLAKE_EXPORT_ROLE_ARN";

/// The Step Functions state machines that run bulk jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSettings {
    /// The import state machine (`statemachines/import.asl.json`).
    pub import_state_machine_arn: String,
    /// The export state machine (`statemachines/export.asl.json`).
    pub export_state_machine_arn: String,
}

impl WorkflowSettings {
    /// Both ARNs from `lookup`, or `None` when neither is set.
    ///
    /// Errors: [`LambdaError::Config`] when only one is set, or one is not a state machine ARN.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, LambdaError> {
        let import = non_empty(&lookup, IMPORT_STATE_MACHINE_ARN_ENV);
        let export = non_empty(&lookup, EXPORT_STATE_MACHINE_ARN_ENV);
        for (name, value) in [(IMPORT_STATE_MACHINE_ARN_ENV, &import), (EXPORT_STATE_MACHINE_ARN_ENV, &export)] {
            if value.as_deref().is_some_and(|arn| !(arn.starts_with("arn:") && arn.contains(":states:") && arn.contains(":stateMachine:")))
            {
                return Err(LambdaError::Config(format!("{name} must be a Step Functions state machine ARN")));
            }
        }
        match (import, export) {
            (None, None) => Ok(None),
            (Some(import_state_machine_arn), Some(export_state_machine_arn)) => {
                Ok(Some(WorkflowSettings { import_state_machine_arn, export_state_machine_arn }))
            }
            _ => {
                Err(LambdaError::Config(format!("set both {IMPORT_STATE_MACHINE_ARN_ENV} and {EXPORT_STATE_MACHINE_ARN_ENV}, or neither")))
            }
        }
    }
}

/// How the HTTP functions authenticate requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `healthlake`: the router verifies SigV4 for service `healthlake` with the key pair from
    /// Secrets Manager, as `fhirlake serve` does (API Gateway's Lambda authorizer pre-checks).
    HealthLake,
    /// `iam`: API Gateway's `AWS_IAM` authorizer verified an `execute-api` signature; the
    /// principal is `requestContext.authorizer.iam.userArn`.
    Iam,
}

impl FromStr for AuthMode {
    type Err = LambdaError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "" | "healthlake" => Ok(AuthMode::HealthLake),
            "iam" => Ok(AuthMode::Iam),
            _ => Err(LambdaError::Config(format!("{AUTH_MODE_ENV} must be healthlake or iam"))),
        }
    }
}

/// The settings of the HTTP functions (`fhir-api`, `control-plane`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// The region.
    pub region: String,
    /// The 12-digit account id.
    pub account_id: String,
    /// The public base URL without a trailing slash, when configured.
    pub public_url: Option<String>,
    /// How requests are authenticated.
    pub auth_mode: AuthMode,
    /// The secret with the access key pair; always set in [`AuthMode::HealthLake`].
    pub access_keys_secret: Option<String>,
    /// The largest page a search or history read returns.
    pub max_page_size: usize,
    /// The table, bucket and KMS key.
    pub aws: AwsSettings,
    /// The state machines that run bulk jobs; `None`: jobs run in the function's process.
    pub workflows: Option<WorkflowSettings>,
    /// Where `$export` kick-offs naming no destination write their files.
    pub export_destination: Option<ExportDestination>,
    /// Whether data-plane audit records are also stored as AuditEvent resources.
    pub audit_events: bool,
    /// How long after one load of the access keys the next may start (not an environment
    /// variable: [`AccessKeys::DEFAULT_REFRESH_INTERVAL`](crate::AccessKeys::DEFAULT_REFRESH_INTERVAL)).
    pub key_refresh_interval: Duration,
}

impl HttpSettings {
    /// Reads the settings from the environment; every data resource must be named
    /// ([`AwsSettings::from_env_strict`]).
    ///
    /// Errors: [`LambdaError::Config`] naming the variable that is missing or invalid.
    pub fn from_env() -> Result<Self, LambdaError> {
        let aws = AwsSettings::from_env_strict().map_err(|e| LambdaError::Config(e.message))?;
        Self::from_lookup(|name| std::env::var(name).ok(), aws)
    }

    /// The settings from `lookup` (an environment) and the data resources `aws`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, aws: AwsSettings) -> Result<Self, LambdaError> {
        let auth_mode: AuthMode = lookup(AUTH_MODE_ENV).unwrap_or_default().trim().parse()?;
        let access_keys_secret = non_empty(&lookup, ACCESS_KEYS_SECRET_ENV);
        if auth_mode == AuthMode::HealthLake && access_keys_secret.is_none() {
            return Err(LambdaError::Config(format!("{ACCESS_KEYS_SECRET_ENV} is not set (required by the healthlake auth mode)")));
        }
        let account_id = required(&lookup, ACCOUNT_ID_ENV)?;
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LambdaError::Config(format!("{ACCOUNT_ID_ENV} must be a 12-digit account id")));
        }
        let public_url = match non_empty(&lookup, PUBLIC_URL_ENV) {
            None => None,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => Some(url.trim_end_matches('/').to_string()),
            Some(_) => return Err(LambdaError::Config(format!("{PUBLIC_URL_ENV} must be an http or https url"))),
        };
        let max_page_size = match non_empty(&lookup, SEARCH_MAX_COUNT_ENV) {
            None => ServiceConfig::DEFAULT_MAX_PAGE_SIZE,
            Some(value) => match value.parse::<usize>() {
                Ok(n) if (1..=ServiceConfig::MAX_PAGE_SIZE_LIMIT).contains(&n) => n,
                _ => {
                    return Err(LambdaError::Config(format!(
                        "{SEARCH_MAX_COUNT_ENV} must be a whole number from 1 to {}",
                        ServiceConfig::MAX_PAGE_SIZE_LIMIT
                    )))
                }
            },
        };
        let audit_events = match non_empty(&lookup, AUDIT_EVENTS_ENV).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(LambdaError::Config(format!("{AUDIT_EVENTS_ENV} must be true or false"))),
        };
        Ok(HttpSettings {
            audit_events,
            workflows: WorkflowSettings::from_lookup(&lookup)?,
            export_destination: non_empty(&lookup, EXPORT_S3_URI_ENV).map(|s3_uri| {
                let kms_key_id = non_empty(&lookup, EXPORT_KMS_KEY_ID_ENV).unwrap_or_else(|| aws.kms_key.clone());
                ExportDestination::new(s3_uri, kms_key_id, non_empty(&lookup, EXPORT_ROLE_ARN_ENV), &account_id)
            }),
            region: required(&lookup, REGION_ENV)?,
            account_id,
            public_url,
            auth_mode,
            access_keys_secret,
            max_page_size,
            aws,
            key_refresh_interval: crate::AccessKeys::DEFAULT_REFRESH_INTERVAL,
        })
    }
}

/// The settings of the task functions of the bulk job state machines (`import-plan`,
/// `import-chunk`, `import-finalize` and the three `export-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStepSettings {
    /// The region.
    pub region: String,
    /// The 12-digit account id.
    pub account_id: String,
    /// The public base URL, when configured (the steps build no link of their own).
    pub public_url: Option<String>,
    /// The table, bucket and KMS key.
    pub aws: AwsSettings,
}

impl JobStepSettings {
    /// Reads the settings from the environment; every data resource must be named
    /// ([`AwsSettings::from_env_strict`]).
    ///
    /// Errors: [`LambdaError::Config`] naming the variable that is missing or invalid.
    pub fn from_env() -> Result<Self, LambdaError> {
        let aws = AwsSettings::from_env_strict().map_err(|e| LambdaError::Config(e.message))?;
        Self::from_lookup(|name| std::env::var(name).ok(), aws)
    }

    /// The settings from `lookup` (an environment) and the data resources `aws`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, aws: AwsSettings) -> Result<Self, LambdaError> {
        let account_id = required(&lookup, ACCOUNT_ID_ENV)?;
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LambdaError::Config(format!("{ACCOUNT_ID_ENV} must be a 12-digit account id")));
        }
        Ok(JobStepSettings {
            region: required(&lookup, REGION_ENV)?,
            account_id,
            public_url: non_empty(&lookup, PUBLIC_URL_ENV).map(|url| url.trim_end_matches('/').to_string()),
            aws,
        })
    }
}

/// The settings of the authorizer function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// The region signatures must be scoped to.
    pub region: String,
    /// The secret with the access key pair.
    pub access_keys_secret: String,
    /// As [`HttpSettings::key_refresh_interval`].
    pub key_refresh_interval: Duration,
    /// The account id, for the datastores' ARNs (`FHIRLAKE_ACCOUNT_ID`; bearer tokens need it).
    pub account_id: Option<String>,
    /// As [`HttpSettings::public_url`]: the audience bearer tokens must name.
    pub public_url: Option<String>,
    /// The table holding the datastores, whose SMART configuration bearer tokens are checked
    /// against; `None`: bearer tokens are only pre-checked.
    pub aws: Option<AwsSettings>,
}

impl AuthorizerSettings {
    /// Reads the settings from the environment.
    ///
    /// Errors: [`LambdaError::Config`] naming the variable that is missing.
    pub fn from_env() -> Result<Self, LambdaError> {
        let mut settings = Self::from_lookup(|name| std::env::var(name).ok())?;
        settings.aws = AwsSettings::from_env_strict().ok();
        Ok(settings)
    }

    /// The settings from `lookup` (an environment), without the data resources.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LambdaError> {
        Ok(AuthorizerSettings {
            region: required(&lookup, REGION_ENV)?,
            access_keys_secret: required(&lookup, ACCESS_KEYS_SECRET_ENV)?,
            key_refresh_interval: crate::AccessKeys::DEFAULT_REFRESH_INTERVAL,
            account_id: non_empty(&lookup, ACCOUNT_ID_ENV),
            public_url: non_empty(&lookup, PUBLIC_URL_ENV).map(|url| url.trim_end_matches('/').to_string()),
            aws: None,
        })
    }
}

fn non_empty(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn required(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Result<String, LambdaError> {
    non_empty(lookup, name).ok_or_else(|| LambdaError::Config(format!("{name} is not set")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws() -> AwsSettings {
        AwsSettings { table: "t".into(), bucket: "b".into(), object_prefix: None, kms_key: "alias/k".into() }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    const BASE: &[(&str, &str)] =
        &[("AWS_REGION", "eu-west-1"), ("FHIRLAKE_ACCOUNT_ID", "123456789012"), ("FHIRLAKE_ACCESS_KEYS_SECRET", "fhirlake/keys")];

    #[test]
    fn healthlake_mode_is_the_default_and_needs_the_secret() {
        let settings = HttpSettings::from_lookup(env(BASE), aws()).unwrap();
        assert_eq!(settings.auth_mode, AuthMode::HealthLake);
        assert_eq!(settings.access_keys_secret.as_deref(), Some("fhirlake/keys"));
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(settings.public_url, None);
        assert_eq!(settings.max_page_size, 1000);
        assert!(!settings.audit_events);
        let on: Vec<_> = BASE.iter().copied().chain([(AUDIT_EVENTS_ENV, "true")]).collect();
        assert!(HttpSettings::from_lookup(env(&on), aws()).unwrap().audit_events);

        let without: Vec<_> = BASE.iter().copied().filter(|(n, _)| *n != ACCESS_KEYS_SECRET_ENV).collect();
        let error = HttpSettings::from_lookup(env(&without), aws()).unwrap_err();
        assert!(error.to_string().contains(ACCESS_KEYS_SECRET_ENV), "{error}");
    }

    #[test]
    fn iam_mode_needs_no_secret() {
        let pairs = [("AWS_REGION", "eu-west-1"), ("FHIRLAKE_ACCOUNT_ID", "123456789012"), ("FHIRLAKE_AUTH_MODE", "iam")];
        let settings = HttpSettings::from_lookup(env(&pairs), aws()).unwrap();
        assert_eq!(settings.auth_mode, AuthMode::Iam);
        assert_eq!(settings.access_keys_secret, None);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (name, value) in [
            ("FHIRLAKE_AUTH_MODE", "jwt"),
            ("FHIRLAKE_ACCOUNT_ID", "12345"),
            ("FHIRLAKE_PUBLIC_URL", "api.example.com"),
            ("FHIRLAKE_SEARCH_MAX_COUNT", "0"),
            ("FHIRLAKE_SEARCH_MAX_COUNT", "10001"),
            ("FHIRLAKE_SEARCH_MAX_COUNT", "many"),
            ("FHIRLAKE_AUDIT_EVENTS", "yes"),
        ] {
            let mut pairs: Vec<_> = BASE.iter().copied().filter(|(n, _)| *n != name).collect();
            pairs.push((name, value));
            let error = HttpSettings::from_lookup(env(&pairs), aws()).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
        let without_region: Vec<_> = BASE.iter().copied().filter(|(n, _)| *n != REGION_ENV).collect();
        assert!(HttpSettings::from_lookup(env(&without_region), aws()).unwrap_err().to_string().contains(REGION_ENV));
    }

    #[test]
    fn the_search_page_limit_is_configurable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FHIRLAKE_SEARCH_MAX_COUNT", "250"));
        assert_eq!(HttpSettings::from_lookup(env(&pairs), aws()).unwrap().max_page_size, 250);
    }

    #[test]
    fn an_export_destination_is_optional_and_takes_the_deployment_key_by_default() {
        assert_eq!(HttpSettings::from_lookup(env(BASE), aws()).unwrap().export_destination, None);
        let mut pairs = BASE.to_vec();
        pairs.push((EXPORT_S3_URI_ENV, "s3://exports/fhir/"));
        let destination = HttpSettings::from_lookup(env(&pairs), aws()).unwrap().export_destination.unwrap();
        assert_eq!(destination.s3_uri, "s3://exports/fhir/");
        assert_eq!(destination.kms_key_id, aws().kms_key);
        assert_eq!(destination.data_access_role_arn, "arn:aws:iam::123456789012:role/fhirlake-export");
        pairs.push((EXPORT_KMS_KEY_ID_ENV, "alias/exports"));
        assert_eq!(HttpSettings::from_lookup(env(&pairs), aws()).unwrap().export_destination.unwrap().kms_key_id, "alias/exports");
    }

    #[test]
    fn the_public_url_loses_its_trailing_slash() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FHIRLAKE_PUBLIC_URL", "https://fhir.example.com/"));
        assert_eq!(HttpSettings::from_lookup(env(&pairs), aws()).unwrap().public_url.as_deref(), Some("https://fhir.example.com"));
    }

    #[test]
    fn state_machines_are_both_set_or_neither() {
        assert_eq!(HttpSettings::from_lookup(env(BASE), aws()).unwrap().workflows, None);
        let import = "arn:aws:states:eu-west-1:123456789012:stateMachine:fhirlake-import";
        let export = "arn:aws:states:eu-west-1:123456789012:stateMachine:fhirlake-export";
        let mut pairs = BASE.to_vec();
        pairs.push((IMPORT_STATE_MACHINE_ARN_ENV, import));
        let error = HttpSettings::from_lookup(env(&pairs), aws()).unwrap_err();
        assert!(error.to_string().contains(EXPORT_STATE_MACHINE_ARN_ENV), "{error}");
        pairs.push((EXPORT_STATE_MACHINE_ARN_ENV, export));
        let workflows = HttpSettings::from_lookup(env(&pairs), aws()).unwrap().workflows.unwrap();
        assert_eq!((workflows.import_state_machine_arn.as_str(), workflows.export_state_machine_arn.as_str()), (import, export));
        pairs.pop();
        pairs.push((EXPORT_STATE_MACHINE_ARN_ENV, "fhirlake-export"));
        let error = HttpSettings::from_lookup(env(&pairs), aws()).unwrap_err();
        assert!(error.to_string().contains(EXPORT_STATE_MACHINE_ARN_ENV), "{error}");
    }

    #[test]
    fn job_steps_need_region_and_account() {
        let settings =
            JobStepSettings::from_lookup(env(&[("AWS_REGION", "eu-west-1"), ("FHIRLAKE_ACCOUNT_ID", "123456789012")]), aws()).unwrap();
        assert_eq!(
            (settings.region.as_str(), settings.account_id.as_str(), settings.public_url.as_deref()),
            ("eu-west-1", "123456789012", None)
        );
        assert!(JobStepSettings::from_lookup(env(&[("AWS_REGION", "eu-west-1")]), aws()).unwrap_err().to_string().contains(ACCOUNT_ID_ENV));
        assert!(JobStepSettings::from_lookup(env(&[("FHIRLAKE_ACCOUNT_ID", "123456789012")]), aws())
            .unwrap_err()
            .to_string()
            .contains(REGION_ENV));
    }

    #[test]
    fn authorizer_needs_region_and_secret() {
        let settings = AuthorizerSettings::from_lookup(env(BASE)).unwrap();
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(settings.access_keys_secret, "fhirlake/keys");
        assert_eq!(settings.key_refresh_interval, crate::AccessKeys::DEFAULT_REFRESH_INTERVAL);
        assert!(AuthorizerSettings::from_lookup(env(&[("AWS_REGION", "eu-west-1")])).is_err());
    }
}
