//! [`LocalKeyFile`]: the key service on a master secret kept in a local file.
//!
//! The file holds one random 256-bit secret (hex, after a format line) and is readable only
//! by its owner (mode 0600; a more open file is refused, as ssh refuses private keys). Each
//! master key id gets its own key-encryption key, `HMAC-SHA256(secret, "fhirlake/kek/v1" ·
//! 0x00 · id)`, so any id works and ids are independent. A data key is wrapped with
//! AES-256-GCM under its id's key, with the id and the context as associated data:
//! `format (1) · nonce (12) · ciphertext and tag (48)`.
//!
//! Losing the file loses every datastore's data; back it up with the data directory.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use async_trait::async_trait;
use fhirlake_ports::{key_wrap, DataKey, KeyService, StorageError, StorageResult};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The first line of a master key file.
const FILE_HEADER: &str = "fhirlake local master key v1";
const KEK_LABEL: &[u8] = b"fhirlake/kek/v1\0";

/// A [`KeyService`] whose master keys derive from a secret in a local file.
pub struct LocalKeyFile {
    secret: Zeroizing<[u8; 32]>,
    path: PathBuf,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile").field("path", &self.path).finish_non_exhaustive()
    }
}

fn key_file_error(what: &str, error: &io::Error) -> StorageError {
    StorageError::internal(format!("{what}: {}", error.kind()))
}

fn encode_file(secret: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("{FILE_HEADER}\n{}\n", hex::encode(secret)))
}

fn decode_file(text: &str) -> StorageResult<Zeroizing<[u8; 32]>> {
    let invalid = || StorageError::internal("master key file is malformed");
    let mut lines = text.lines();
    if lines.next() != Some(FILE_HEADER) {
        return Err(invalid());
    }
    let hex_secret = lines.next().ok_or_else(invalid)?.trim();
    if lines.any(|line| !line.trim().is_empty()) {
        return Err(invalid());
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_secret, secret.as_mut()).map_err(|_| invalid())?;
    Ok(secret)
}

#[cfg(unix)]
fn check_permissions(file: &File) -> StorageResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata().map_err(|e| key_file_error("cannot read the master key file", &e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StorageError::internal(format!(
            "master key file must be readable by its owner only (mode {:o}; run chmod 600 on it)",
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_file: &File) -> StorageResult<()> {
    Ok(())
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

fn read_existing(path: &Path) -> StorageResult<Option<Zeroizing<[u8; 32]>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(key_file_error("cannot open the master key file", &error)),
    };
    check_permissions(&file)?;
    let mut text = Zeroizing::new(String::new());
    io::Read::read_to_string(&mut file, &mut text).map_err(|e| key_file_error("cannot read the master key file", &e))?;
    decode_file(&text).map(Some)
}

/// Writes a fresh secret to a temporary file, then links it into place: the key file appears
/// whole or not at all, and of two processes racing, one secret wins and both use it.
fn create_new(path: &Path) -> StorageResult<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| key_file_error("cannot create the master key directory", &e))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(secret.as_mut());
    let mut random = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut random);
    let temp = dir.join(format!(".master.key.tmp-{}", hex::encode(random)));
    let written = create_owner_only(&temp).and_then(|mut file| {
        file.write_all(encode_file(&secret).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match linked {
        // AlreadyExists: another process created the file first; the caller reads theirs.
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(key_file_error("cannot create the master key file", &error));
        }
        _ => {}
    }
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| key_file_error("cannot sync the master key directory", &e))?;
    Ok(())
}

impl LocalKeyFile {
    /// Opens the master key file at `path`, creating it with a fresh random secret (and its
    /// directory) on first use. Blocking.
    ///
    /// Errors: `Internal` when the file is unreadable, malformed, or readable by others.
    pub fn open_or_create(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref();
        if let Some(secret) = read_existing(path)? {
            return Ok(LocalKeyFile { secret, path: path.to_path_buf() });
        }
        create_new(path)?;
        let secret = read_existing(path)?.ok_or_else(|| StorageError::internal("master key file vanished after creation"))?;
        Ok(LocalKeyFile { secret, path: path.to_path_buf() })
    }

    /// The file the secret lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The AES-256-GCM cipher of `master_key_id`'s key-encryption key.
    fn cipher(&self, master_key_id: &str) -> StorageResult<Aes256Gcm> {
        if master_key_id.is_empty() {
            return Err(StorageError::invalid("master key id must not be empty"));
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_ref())
            .map_err(|_| StorageError::internal("invalid master secret length"))?;
        mac.update(KEK_LABEL);
        mac.update(master_key_id.as_bytes());
        let mut kek = Zeroizing::new([0u8; 32]);
        kek.copy_from_slice(&mac.finalize().into_bytes());
        Aes256Gcm::new_from_slice(kek.as_ref()).map_err(|_| StorageError::internal("invalid key-encryption key length"))
    }
}

#[async_trait]
impl KeyService for LocalKeyFile {
    async fn generate_data_key(&self, master_key_id: &str, context: &str) -> StorageResult<DataKey> {
        key_wrap::generate_wrapped(&self.cipher(master_key_id)?, master_key_id, context)
    }

    async fn decrypt_data_key(&self, master_key_id: &str, context: &str, wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>> {
        key_wrap::unwrap(&self.cipher(master_key_id)?, master_key_id, context, wrapped)
    }

    fn default_key_id(&self) -> String {
        "local/default".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_format_round_trips_and_rejects_garbage() {
        let secret = [7u8; 32];
        assert_eq!(decode_file(&encode_file(&secret)).map(|s| *s), Ok(secret));
        assert!(decode_file("").is_err());
        assert!(decode_file(&format!("{FILE_HEADER}\nzz\n")).is_err());
        assert!(decode_file(&format!("{FILE_HEADER}\n{}\n", hex::encode([1u8; 31]))).is_err());
        assert!(decode_file(&format!("{FILE_HEADER}\n{}\nextra\n", hex::encode([1u8; 32]))).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn created_file_is_owner_only_and_reopens_with_the_same_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys").join("master.key");
        let first = LocalKeyFile::open_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = LocalKeyFile::open_or_create(&path).expect("reopen");
        assert_eq!(*first.secret, *again.secret);
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent")).expect("read dir").collect();
        assert_eq!(leftovers.len(), 1, "temporary files are cleaned up");
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("master.key");
        LocalKeyFile::open_or_create(&path).expect("create");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let error = LocalKeyFile::open_or_create(&path).expect_err("group-readable file");
        assert!(error.message.contains("chmod 600"), "{error}");
    }

    #[tokio::test]
    async fn keys_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("master.key");
        let key = LocalKeyFile::open_or_create(&path).expect("create").generate_data_key("any/id", "ctx").await.expect("generate");
        let reopened = LocalKeyFile::open_or_create(&path).expect("reopen");
        let unwrapped = reopened.decrypt_data_key("any/id", "ctx", &key.wrapped).await.expect("decrypt");
        assert_eq!(*unwrapped, *key.plaintext);
    }
}
