//! [`LocalObjectStore`]: the object store on a local directory, one file per object.
//!
//! A key `a/b/c.json` is the file `<root>/a/b/c.json`. Keys are checked before they touch
//! the filesystem: no empty, `.` or `..` segment, no NUL, so no key can leave the root.
//! Writes go to a temporary file in the target directory, are fsynced, then renamed over the
//! target (and the directory fsynced), so readers see the old or the new object whole and an
//! acknowledged put survives a crash. Directories left empty by a delete are removed.
//!
//! Multipart uploads keep their parts under `<root>/.fhirlake-tmp-uploads/{upload id}/` (a
//! reserved name, never listed): a file `key` holding the target key and one file
//! `{number:05}-{etag}` per part. Completing one writes the concatenation the same atomic way
//! and removes the upload's directory.
//!
//! Unlike S3, a key cannot be both an object and a prefix of other keys' directories (`a`
//! and `a/b`): such a put is rejected as `Invalid`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use fhirlake_ports::{
    check_part_list, check_part_number, ObjectList, ObjectMeta, ObjectStore, StorageError, StorageResult, Upload, UploadedPart,
};
use rand::RngCore;

/// Names of temporary files start with this; keys may not use it as a segment prefix.
const TEMP_PREFIX: &str = ".fhirlake-tmp-";
/// S3's key length limit.
const MAX_KEY_BYTES: usize = 1024;
/// The usual filesystem limit on one path component.
const MAX_SEGMENT_BYTES: usize = 255;

/// An [`ObjectStore`] on a local directory.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
}

fn io_error(what: &str, error: &io::Error) -> StorageError {
    StorageError::internal(format!("{what}: {}", error.kind()))
}

fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory)
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= MAX_SEGMENT_BYTES
        && !segment.starts_with(TEMP_PREFIX)
        && !segment.contains('\0')
        && !(cfg!(windows) && segment.contains(['\\', ':']))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> StorageResult<T> + Send + 'static) -> StorageResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|_| StorageError::internal("object store task failed"))?
}

impl LocalObjectStore {
    /// A store rooted at `root`, which is created if absent. Blocking.
    pub fn new(root: impl Into<PathBuf>) -> StorageResult<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_error("cannot create the object store directory", &e))?;
        Ok(LocalObjectStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. Errors: `Invalid` for a key that is not a safe relative path.
    fn object_path(&self, key: &str) -> StorageResult<PathBuf> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StorageError::invalid("object key must be 1 to 1024 bytes"));
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            if !valid_segment(segment) {
                return Err(StorageError::invalid("object key has an empty, relative or reserved path segment"));
            }
            path.push(segment);
        }
        Ok(path)
    }
}

fn put_file(path: &Path, body: &[u8]) -> StorageResult<()> {
    put_file_with(path, |file| file.write_all(body))
}

/// Writes the file at `path` atomically with what `fill` writes into a temporary file.
fn put_file_with(path: &Path, mut fill: impl FnMut(&mut File) -> io::Result<()>) -> StorageResult<()> {
    let dir = path.parent().ok_or_else(|| StorageError::internal("object path has no parent"))?;
    // A concurrent delete may remove an empty directory between its creation and our temp
    // file; try again a few times.
    for _ in 0..3 {
        if let Err(error) = fs::create_dir_all(dir) {
            return Err(match error.kind() {
                io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                    StorageError::invalid("object key conflicts with an existing object used as a directory")
                }
                _ => io_error("cannot create the object directory", &error),
            });
        }
        let mut random = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut random);
        let temp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(random)));
        let mut file = match File::create_new(&temp) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error("cannot create a temporary object file", &error)),
        };
        let written = fill(&mut file).and_then(|()| file.sync_all());
        drop(file);
        if let Err(error) = written.and_then(|()| fs::rename(&temp, path)) {
            let _ = fs::remove_file(&temp);
            return Err(match error.kind() {
                io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty => {
                    StorageError::invalid("object key conflicts with a directory of other objects")
                }
                _ => io_error("cannot write the object", &error),
            });
        }
        sync_dir(dir)?;
        return Ok(());
    }
    Err(StorageError::internal("object directory kept disappearing during the write"))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("cannot sync the object directory", &e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> StorageResult<()> {
    Ok(())
}

fn open_object(path: &Path) -> StorageResult<(File, u64)> {
    let file = File::open(path).map_err(|e| {
        if is_missing(&e) {
            StorageError::not_found("object not found")
        } else {
            io_error("cannot open the object", &e)
        }
    })?;
    let meta = file.metadata().map_err(|e| io_error("cannot read object metadata", &e))?;
    if !meta.is_file() {
        return Err(StorageError::not_found("object not found"));
    }
    Ok((file, meta.len()))
}

fn read_range(path: &Path, range: Range<u64>) -> StorageResult<Bytes> {
    let (mut file, len) = open_object(path)?;
    let end = range.end.min(len);
    let start = range.start.min(end);
    let want = usize::try_from(end - start).map_err(|_| StorageError::invalid("range too large"))?;
    let mut body = vec![0u8; want];
    file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut body)).map_err(|e| io_error("cannot read the object", &e))?;
    Ok(Bytes::from(body))
}

/// Removes `dir` and its parents while they are empty, stopping at `root`.
fn remove_empty_dirs(root: &Path, mut dir: &Path) {
    while dir != root && dir.starts_with(root) {
        if fs::remove_dir(dir).is_err() {
            return;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
}

/// Lists objects of `dir` (whose keys start with `dir_key`) in key order into `out`,
/// stopping once it holds `want` objects. Subtrees that cannot match are not read.
fn walk(dir: &Path, dir_key: &str, prefix: &str, start_after: Option<&str>, want: usize, out: &mut Vec<ObjectMeta>) -> StorageResult<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if is_missing(&error) => return Ok(()),
        Err(error) => return Err(io_error("cannot list the object directory", &error)),
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list the object directory", &e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let Ok(file_type) = entry.file_type() else { continue };
        if file_type.is_dir() {
            children.push((format!("{dir_key}{name}/"), true, entry.path()));
        } else if file_type.is_file() {
            children.push((format!("{dir_key}{name}"), false, entry.path()));
        }
        // Symlinks and other file types are never objects.
    }
    // A directory sorts as its name plus '/', which is where its keys sort among siblings.
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, is_dir, path) in children {
        if out.len() >= want {
            break;
        }
        if is_dir {
            if !key.starts_with(prefix) && !prefix.starts_with(&key) {
                continue;
            }
            if start_after.is_some_and(|after| after > key.as_str() && !after.starts_with(&key)) {
                continue;
            }
            walk(&path, &key, prefix, start_after, want, out)?;
        } else {
            if !key.starts_with(prefix) || start_after.is_some_and(|after| key.as_str() <= after) {
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) => out.push(ObjectMeta { key, size: meta.len() }),
                Err(error) if is_missing(&error) => {}
                Err(error) => return Err(io_error("cannot read object metadata", &error)),
            }
        }
    }
    Ok(())
}

/// The directory holding multipart uploads in progress (a reserved, never listed name).
const UPLOADS_DIR: &str = ".fhirlake-tmp-uploads";
/// The file inside an upload's directory that names its target key.
const UPLOAD_KEY_FILE: &str = "key";

impl LocalObjectStore {
    /// The directory of an upload, checking that it exists and belongs to `upload.key`.
    /// Errors: `NotFound`.
    fn upload_dir(&self, upload: &Upload) -> StorageResult<PathBuf> {
        let valid_id = !upload.upload_id.is_empty() && upload.upload_id.bytes().all(|b| b.is_ascii_hexdigit());
        let dir = self.root.join(UPLOADS_DIR).join(&upload.upload_id);
        match fs::read_to_string(dir.join(UPLOAD_KEY_FILE)) {
            Ok(key) if valid_id && key == upload.key => Ok(dir),
            _ => Err(StorageError::not_found("no such upload")),
        }
    }
}

/// The uploaded parts in `dir`: number → (etag, size, path).
fn uploaded_parts(dir: &Path) -> StorageResult<std::collections::BTreeMap<u32, (String, usize, PathBuf)>> {
    let mut parts = std::collections::BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error("cannot list the upload's parts", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list the upload's parts", &e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Some((number, etag)) = name.split_once('-') else { continue };
        let Ok(number) = number.parse::<u32>() else { continue };
        let size = entry.metadata().map_err(|e| io_error("cannot read a part's metadata", &e))?.len();
        parts.insert(number, (etag.to_string(), usize::try_from(size).unwrap_or(usize::MAX), entry.path()));
    }
    Ok(parts)
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        let path = self.object_path(key)?;
        blocking(move || put_file(&path, &body)).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let path = self.object_path(key).map_err(|_| StorageError::not_found("object not found"))?;
        blocking(move || {
            let (mut file, len) = open_object(&path)?;
            let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut body).map_err(|e| io_error("cannot read the object", &e))?;
            Ok(Bytes::from(body))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let path = self.object_path(key).map_err(|_| StorageError::not_found("object not found"))?;
        blocking(move || read_range(&path, range)).await
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let path = self.object_path(key).map_err(|_| StorageError::not_found("object not found"))?;
        let key = key.to_string();
        blocking(move || {
            let (_, size) = open_object(&path)?;
            Ok(ObjectMeta { key, size })
        })
        .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StorageResult<ObjectList> {
        if limit == 0 {
            return Err(StorageError::invalid("list limit must be at least 1"));
        }
        // Start at the deepest directory the prefix names whole: "a/b/c" starts in "a/b/".
        let dir_key = prefix.rfind('/').map_or("", |slash| &prefix[..=slash]);
        let mut dir = self.root.clone();
        for segment in dir_key.split_terminator('/') {
            if !valid_segment(segment) {
                // No valid key has this prefix.
                return Ok(ObjectList::default());
            }
            dir.push(segment);
        }
        let (dir_key, prefix, start_after) = (dir_key.to_string(), prefix.to_string(), start_after.map(str::to_string));
        blocking(move || {
            let mut objects = Vec::new();
            walk(&dir, &dir_key, &prefix, start_after.as_deref(), limit.saturating_add(1), &mut objects)?;
            let mut list = ObjectList::default();
            if objects.len() > limit {
                objects.truncate(limit);
                list.next_start_after = objects.last().map(|o| o.key.clone());
            }
            list.objects = objects;
            Ok(list)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let Ok(path) = self.object_path(key) else {
            // No object can live under an invalid key.
            return Ok(());
        };
        let root = self.root.clone();
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if is_missing(&error) => return Ok(()),
                Err(error) => return Err(io_error("cannot delete the object", &error)),
            }
            if let Some(dir) = path.parent() {
                remove_empty_dirs(&root, dir);
            }
            Ok(())
        })
        .await
    }

    async fn create_upload(&self, key: &str) -> StorageResult<Upload> {
        self.object_path(key)?;
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let upload = Upload { key: key.to_string(), upload_id: hex::encode(id) };
        let dir = self.root.join(UPLOADS_DIR).join(&upload.upload_id);
        let key = key.to_string();
        blocking(move || {
            fs::create_dir_all(&dir).map_err(|e| io_error("cannot create the upload directory", &e))?;
            put_file(&dir.join(UPLOAD_KEY_FILE), key.as_bytes())
        })
        .await?;
        Ok(upload)
    }

    async fn upload_part(&self, upload: &Upload, number: u32, body: Bytes) -> StorageResult<UploadedPart> {
        check_part_number(number)?;
        let dir = self.upload_dir(upload)?;
        let mut tag = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut tag);
        let etag = hex::encode(tag);
        let part_etag = etag.clone();
        blocking(move || {
            let previous = uploaded_parts(&dir)?.remove(&number);
            put_file(&dir.join(format!("{number:05}-{part_etag}")), &body)?;
            if let Some((_, _, path)) = previous {
                let _ = fs::remove_file(path);
            }
            Ok(())
        })
        .await?;
        Ok(UploadedPart { number, etag })
    }

    async fn complete_upload(&self, upload: &Upload, parts: &[UploadedPart]) -> StorageResult<()> {
        let dir = self.upload_dir(upload)?;
        let target = self.object_path(&upload.key)?;
        let parts = parts.to_vec();
        blocking(move || {
            let uploaded = uploaded_parts(&dir)?;
            let sizes = uploaded.iter().map(|(number, (etag, size, _))| (*number, (etag.clone(), *size))).collect();
            check_part_list(&parts, &sizes)?;
            put_file_with(&target, |file| {
                for part in &parts {
                    let mut source = File::open(&uploaded[&part.number].2)?;
                    io::copy(&mut source, file)?;
                }
                Ok(())
            })?;
            fs::remove_dir_all(&dir).map_err(|e| io_error("cannot remove the completed upload", &e))
        })
        .await
    }

    async fn abort_upload(&self, upload: &Upload) -> StorageResult<()> {
        let Ok(dir) = self.upload_dir(upload) else { return Ok(()) };
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if is_missing(&error) => Ok(()),
            Err(error) => Err(io_error("cannot remove the aborted upload", &error)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_rejected() {
        let store = LocalObjectStore { root: PathBuf::from("/srv/objects") };
        for key in ["", "/abs", "a//b", "a/", "..", "a/../b", "./a", "a/.", "a\0b", ".fhirlake-tmp-x", &"x".repeat(256), &"a/".repeat(600)]
        {
            assert!(store.object_path(key).is_err(), "{key:?}");
        }
        assert_eq!(store.object_path("a/b.json").ok(), Some(PathBuf::from("/srv/objects/a/b.json")));
        assert_eq!(store.object_path("...").ok(), Some(PathBuf::from("/srv/objects/...")));
        assert_eq!(store.object_path(".hidden/x").ok(), Some(PathBuf::from("/srv/objects/.hidden/x")));
    }

    #[tokio::test]
    async fn objects_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalObjectStore::new(dir.path().join("objects")).expect("local object store call");
        assert!(store.put("../escape", Bytes::from_static(b"x")).await.is_err());
        assert!(store.put("/etc/escape", Bytes::from_static(b"x")).await.is_err());
        assert!(!dir.path().join("escape").exists());
        assert_eq!(store.get("../objects/x").await.map_err(|e| e.kind), Err(fhirlake_ports::StorageErrorKind::NotFound));
        let listed = store.list("../", None, 10).await.expect("local object store call");
        assert!(listed.objects.is_empty());
    }

    #[tokio::test]
    async fn object_and_directory_conflicts_are_invalid() {
        let dir = tempfile::tempdir().expect("local object store call");
        let store = LocalObjectStore::new(dir.path()).expect("local object store call");
        store.put("a", Bytes::from_static(b"file")).await.expect("local object store call");
        assert_eq!(store.put("a/b", Bytes::from_static(b"x")).await.map_err(|e| e.kind), Err(fhirlake_ports::StorageErrorKind::Invalid));
        store.put("c/d", Bytes::from_static(b"x")).await.expect("local object store call");
        assert_eq!(store.put("c", Bytes::from_static(b"x")).await.map_err(|e| e.kind), Err(fhirlake_ports::StorageErrorKind::Invalid));
        assert_eq!(store.get("a").await.ok(), Some(Bytes::from_static(b"file")));
    }

    #[tokio::test]
    async fn delete_removes_empty_directories_and_temp_files_are_not_listed() {
        let dir = tempfile::tempdir().expect("local object store call");
        let store = LocalObjectStore::new(dir.path()).expect("local object store call");
        store.put("x/y/z", Bytes::from_static(b"x")).await.expect("local object store call");
        fs::write(dir.path().join("x").join(format!("{TEMP_PREFIX}leftover")), b"partial").expect("local object store call");
        let listed = store.list("", None, 10).await.expect("local object store call");
        assert_eq!(listed.objects, vec![ObjectMeta { key: "x/y/z".into(), size: 1 }]);
        store.delete("x/y/z").await.expect("local object store call");
        assert!(!dir.path().join("x/y").exists());
        assert!(dir.path().join("x").exists(), "a directory holding a leftover temp file is kept");
        assert!(dir.path().exists());
    }
}
