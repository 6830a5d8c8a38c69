//! The key pair `fhirlake serve` accepts: from `FHIRLAKE_ACCESS_KEY_ID` and
//! `FHIRLAKE_SECRET_ACCESS_KEY`, or generated on first start and kept in the data dir.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use fhirlake_auth::StaticCredentials;
use rand::{distributions::Alphanumeric, Rng};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "credentials.json";

#[derive(Serialize, Deserialize)]
struct StoredPair {
    access_key_id: String,
    secret_access_key: String,
}

/// Loads the configured key pair, generating and printing one when none is configured.
pub fn load_or_generate(data_dir: &Path) -> anyhow::Result<StaticCredentials> {
    let from_env = (std::env::var("FHIRLAKE_ACCESS_KEY_ID").ok(), std::env::var("FHIRLAKE_SECRET_ACCESS_KEY").ok());
    match from_env {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => return Ok(StaticCredentials::new(id, secret)),
        (None, None) => {}
        _ => anyhow::bail!("set both FHIRLAKE_ACCESS_KEY_ID and FHIRLAKE_SECRET_ACCESS_KEY, or neither"),
    }
    let path = data_dir.join(FILE_NAME);
    let pair = if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str::<StoredPair>(&text).with_context(|| format!("parsing {}", path.display()))?
    } else {
        let pair = StoredPair { access_key_id: format!("FHL{}", random_upper(17)), secret_access_key: random_secret(40) };
        write_private(&path, &serde_json::to_vec_pretty(&pair)?)?;
        pair
    };
    eprintln!(
        "fhirlake credentials (from {}):\n  export AWS_ACCESS_KEY_ID={}\n  export AWS_SECRET_ACCESS_KEY={}",
        path.display(),
        pair.access_key_id,
        pair.secret_access_key
    );
    Ok(StaticCredentials::new(pair.access_key_id, pair.secret_access_key))
}

/// The key pair a `fhirlake serve` generated in `data_dir`, if there is one (for the CLI's
/// own calls to that server).
pub fn load_stored(data_dir: &Path) -> anyhow::Result<Option<(String, String)>> {
    let path = data_dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pair = serde_json::from_str::<StoredPair>(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some((pair.access_key_id, pair.secret_access_key)))
}

fn random_upper(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[rng.gen_range(0..32)])).collect()
}

fn random_secret(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
