//! The instance lock on SQLite: an exclusive `flock` on a file beside the
//! database (`<database>.lock`), holding the holder's name. SQLite has one
//! writer per file whatever the instance, so the lock covers the file.
//! Once taken, the lock file is watched like the database (`identity.rs`):
//! deleted, it would let another daemon lock a new one.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::identity::{OpenFiles, Watched};
use crate::store::error::StoreError;
use crate::store::lock::{holder_name, InstanceLock, LockState};

/// Takes the lock beside `database`, or says who holds it.
pub(super) fn take(
    database: &std::path::Path,
    state: Arc<LockState>,
    files: &OpenFiles,
) -> Result<InstanceLock, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
    // SAFETY: `flock` on a descriptor this function owns; it only
    // changes the file's advisory lock.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(StoreError::Unavailable(sqlx::Error::Io(e)));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(StoreError::InstanceLocked {
            what: format!("the SQLite database {}", database.display()),
            holder: holder.trim().to_owned(),
        });
    }
    let name = format!(
        "{} since {}",
        holder_name(),
        chrono::Utc::now().to_rfc3339()
    );
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(name.as_bytes()))
        .and_then(|()| file.flush());
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "Cannot write the lock holder's name");
    }
    match Watched::open(&path, &file) {
        Ok(watched) => files.watch_lock(watched),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot read the lock file's identity; it is not watched")
        }
    }
    state.set_held();
    Ok(InstanceLock::file(file, state))
}
