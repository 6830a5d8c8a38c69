//! [`JsonLinesAuditLog`]: the audit trail as an append-only file of JSON lines.
//!
//! See the type's documentation for the file format, the writer thread and durability.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fhirlake_ports::audit::{AuditLog, AuditRecord};
use tokio::sync::{oneshot, Semaphore};

/// How many records may wait to be written before [`AuditLog::append`] waits for room.
const QUEUE_CAPACITY: usize = 4096;

/// The longest a written line stays without an fdatasync (it is in the OS's page cache at once,
/// so it survives a crash of the process, not of the machine).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The most bytes one write gathers (a batch ends at the first line that crosses it).
const MAX_BATCH_BYTES: usize = 1 << 20;

enum Message {
    Line(Vec<u8>),
    Sync(oneshot::Sender<io::Result<()>>),
}

/// An [`AuditLog`] appending JSON lines to a local file.
///
/// One line per record, exactly [`AuditRecord::to_json_line`] (the same line the Lambda
/// functions print to CloudWatch Logs). The file is opened with `O_APPEND` and never truncated
/// or rewritten; on unix it is readable by its owner only (mode 0600, tightened when an existing
/// file is more open). Readers should skip blank lines: after a failed write the next write
/// starts with a newline, so a partly written line cannot swallow the next record.
///
/// Writes happen on one dedicated thread, so the async runtime never waits for the disk:
/// [`AuditLog::append`] serializes the record, waits for room in a bounded queue of 4096
/// records (records are never dropped for want of room) and returns. The thread writes whatever
/// is queued in one `write` (so the line reaches the OS at once and survives a crash of the
/// process) and fdatasyncs the file within a second of an unsynced write, on
/// [`flush`](Self::flush), and when the log is dropped. Dropping the log waits until every
/// queued record is on disk.
pub struct JsonLinesAuditLog {
    path: PathBuf,
    queue: Option<Sender<Message>>,
    room: Arc<Semaphore>,
    failures: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for JsonLinesAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesAuditLog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl JsonLinesAuditLog {
    /// Opens `path` for appending (creating it, mode 0600, and its missing parent directories,
    /// mode 0700) and starts the writer thread. Blocking; call it at start-up.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_with_capacity(path, QUEUE_CAPACITY)
    }

    fn open_with_capacity(path: &Path, capacity: usize) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dirs(parent)?;
        }
        let file = open_append(path)?;
        let (queue, receiver) = mpsc::channel();
        let room = Arc::new(Semaphore::new(capacity));
        let failures = Arc::new(AtomicU64::new(0));
        let writer = Writer { file, path: path.to_path_buf(), room: room.clone(), failures: failures.clone(), newline_owed: false };
        let writer = std::thread::Builder::new().name("fhirlake-audit".into()).spawn(move || writer.run(receiver))?;
        Ok(JsonLinesAuditLog { path: path.to_path_buf(), queue: Some(queue), room, failures, writer: Some(writer) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every record appended before this call is written and fdatasynced.
    ///
    /// Errors: the write or the sync failed (those records are also counted in
    /// [`AuditLog::failures`]), or the writer thread is gone.
    pub async fn flush(&self) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Message::Sync(reply)).map_err(|_| writer_gone())?;
        done.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    fn send(&self, message: Message) -> Result<(), mpsc::SendError<Message>> {
        match &self.queue {
            Some(queue) => queue.send(message),
            None => Err(mpsc::SendError(message)),
        }
    }
}

#[async_trait]
impl AuditLog for JsonLinesAuditLog {
    async fn append(&self, record: &AuditRecord) {
        let line = record.to_json_line();
        // The writer returns the permit once the line is written; the semaphore is never closed.
        match self.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return self.lost(record, "queue closed"),
        }
        if self.send(Message::Line(line)).is_err() {
            self.room.add_permits(1);
            self.lost(record, "writer thread gone");
        }
    }

    fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl JsonLinesAuditLog {
    fn lost(&self, record: &AuditRecord, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %self.path.display(), request_id = %record.request_id, why, "audit record not written");
    }
}

impl Drop for JsonLinesAuditLog {
    /// Closes the queue and waits for the writer to write and sync what it holds.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the audit writer thread has stopped")
}

struct Writer {
    file: File,
    path: PathBuf,
    room: Arc<Semaphore>,
    failures: Arc<AtomicU64>,
    /// A write failed, perhaps halfway through a line: the next write starts with `\n`.
    newline_owed: bool,
}

impl Writer {
    fn run(mut self, queue: Receiver<Message>) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let first = if unsynced {
                match queue.recv_timeout(SYNC_INTERVAL.saturating_sub(last_sync.elapsed())) {
                    Ok(message) => Some(message),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match queue.recv() {
                    Ok(message) => Some(message),
                    Err(_) => break,
                }
            };
            let mut batch = Batch::default();
            if let Some(message) = first {
                batch.add(message);
                while batch.bytes.len() < MAX_BATCH_BYTES {
                    match queue.try_recv() {
                        Ok(message) => batch.add(message),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
            }
            let written = self.write(&batch);
            unsynced |= batch.lines > 0;
            if !batch.waiters.is_empty() || (unsynced && last_sync.elapsed() >= SYNC_INTERVAL) {
                let synced = written.and_then(|()| self.sync());
                for waiter in batch.waiters {
                    let _ = waiter.send(synced.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
                }
                last_sync = Instant::now();
                unsynced = false;
            }
        }
        if unsynced {
            let _ = self.sync();
        }
    }

    /// Writes the batch's lines in one `write_all`, then makes room for as many records.
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        if batch.lines == 0 {
            return Ok(());
        }
        let result = if self.newline_owed {
            let mut bytes = Vec::with_capacity(batch.bytes.len() + 1);
            bytes.push(b'\n');
            bytes.extend_from_slice(&batch.bytes);
            self.file.write_all(&bytes)
        } else {
            self.file.write_all(&batch.bytes)
        };
        self.room.add_permits(batch.lines);
        match result {
            Ok(()) => {
                self.newline_owed = false;
                Ok(())
            }
            Err(e) => {
                self.newline_owed = true;
                self.failures.fetch_add(batch.lines as u64, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), records = batch.lines, error = %e, "could not write audit records");
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data().inspect_err(|e| {
            tracing::warn!(path = %self.path.display(), error = %e, "could not sync the audit log");
        })
    }
}

/// What one write gathers: lines, and the flushes waiting for them.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: usize,
    waiters: Vec<oneshot::Sender<io::Result<()>>>,
}

impl Batch {
    fn add(&mut self, message: Message) {
        match message {
            Message::Line(line) => {
                self.bytes.extend_from_slice(&line);
                self.lines += 1;
            }
            Message::Sync(waiter) => self.waiters.push(waiter),
        }
    }
}

#[cfg(unix)]
fn create_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_dirs(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhirlake_ports::audit::AuditOutcome;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            time: "2026-12-01T20:31:02.123Z".into(),
            request_id: format!("req-{n}"),
            plane: "data".into(),
            principal: "AKIDEXAMPLE".into(),
            client_id: None,
            authentication: "sigv4".into(),
            operation: "ReadResource".into(),
            datastore_id: Some("0123456789abcdef0123456789abcdef".into()),
            resource_type: Some("Patient".into()),
            resource_id: Some(n.to_string()),
            patient: None,
            outcome: AuditOutcome::Success,
            status: 200,
        }
    }

    fn read_records(path: &Path) -> Vec<AuditRecord> {
        let text = fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|line| {
                assert!(line.starts_with(r#"{"type":"fhirlake.audit","#), "{line}");
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_make_exactly_n_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("nested").join("audit.jsonl");
        // A small queue, so appends also wait for room.
        let log = Arc::new(JsonLinesAuditLog::open_with_capacity(&path, 8).unwrap());
        const TASKS: usize = 32;
        const EACH: usize = 50;
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        log.append(&record(t * EACH + i)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        log.flush().await.unwrap();
        let records = read_records(&path);
        assert_eq!(records.len(), TASKS * EACH);
        let mut ids: Vec<String> = records.iter().map(|r| r.request_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), TASKS * EACH);
        assert_eq!(records[0], record(records[0].resource_id.as_ref().unwrap().parse().unwrap()));
        assert_eq!(log.failures(), 0);
        // Each task's records keep their order.
        for t in 0..TASKS {
            let own: Vec<usize> =
                records.iter().map(|r| r.resource_id.as_ref().unwrap().parse::<usize>().unwrap()).filter(|n| n / EACH == t).collect();
            assert_eq!(own, (t * EACH..(t + 1) * EACH).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = JsonLinesAuditLog::open(&path).unwrap();
        log.append(&record(1)).await;
        log.append(&record(2)).await;
        log.flush().await.unwrap();
        let before = fs::read(&path).unwrap();
        drop(log);
        let log = JsonLinesAuditLog::open(&path).unwrap();
        log.append(&record(3)).await;
        log.flush().await.unwrap();
        let after = fs::read(&path).unwrap();
        assert!(after.starts_with(&before));
        assert_eq!(read_records(&path), vec![record(1), record(2), record(3)]);
    }

    #[tokio::test]
    async fn dropping_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = JsonLinesAuditLog::open(&path).unwrap();
        for n in 0..100 {
            log.append(&record(n)).await;
        }
        drop(log);
        assert_eq!(read_records(&path), (0..100).map(record).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn flush_of_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = JsonLinesAuditLog::open(&path).unwrap();
        log.flush().await.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(log.path(), path);
    }

    #[tokio::test]
    async fn lines_are_written_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = JsonLinesAuditLog::open(&path).unwrap();
        log.append(&record(1)).await;
        // Written at once (to the OS), without any flush.
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_records(&path).is_empty() {
            assert!(Instant::now() < deadline, "the line was never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(read_records(&path), vec![record(1)]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = JsonLinesAuditLog::open(&path).unwrap();
        log.append(&record(1)).await;
        log.flush().await.unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(log);

        // An existing file that is too open is tightened, and kept.
        let open = dir.path().join("open.jsonl");
        fs::write(&open, record(7).to_json_line()).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        let log = JsonLinesAuditLog::open(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o600);
        log.append(&record(8)).await;
        log.flush().await.unwrap();
        assert_eq!(read_records(&open), vec![record(7), record(8)]);

        // Directories it creates are private too.
        let nested = dir.path().join("new-dir").join("audit.jsonl");
        drop(JsonLinesAuditLog::open(&nested).unwrap());
        assert_eq!(fs::metadata(dir.path().join("new-dir")).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn open_fails_on_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(JsonLinesAuditLog::open(dir.path()).is_err());
    }
}
