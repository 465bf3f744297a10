//! [`OpenFiles`]: whether the files the SQLite store opened are still the
//! ones their paths name. A database file deleted (or replaced) while the
//! daemon runs leaves its connections writing into the unlinked file:
//! every commit succeeds and would be acknowledged to Zulip, then vanishes
//! with the last descriptor. So each append, after its commit and before
//! it returns, checks that the database's path and the lock file's path
//! still name the device and inode they had when opened: two `stat`s per
//! commit, none per event. A lock file deleted or replaced would let a
//! second daemon take a fresh lock on the same database, so it counts too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::store::error::StoreError;

/// A file by identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A path and the file it named when it was opened.
#[derive(Debug)]
pub(super) struct Watched {
    path: PathBuf,
    id: FileId,
}

impl Watched {
    /// The file `path` names now.
    pub(super) fn at(path: &Path) -> std::io::Result<Watched> {
        let id = FileId::of(&std::fs::metadata(path)?);
        Ok(Watched {
            path: path.to_owned(),
            id,
        })
    }

    /// `file`, opened at `path` (its own identity, whatever the path names
    /// by now).
    pub(super) fn open(path: &Path, file: &std::fs::File) -> std::io::Result<Watched> {
        let id = FileId::of(&file.metadata()?);
        Ok(Watched {
            path: path.to_owned(),
            id,
        })
    }

    /// `Ok` while the path still names the file; else why not.
    fn check(&self) -> Result<(), StoreError> {
        let change = match std::fs::metadata(&self.path) {
            Ok(meta) if FileId::of(&meta) == self.id => return Ok(()),
            Ok(meta) => format!(
                "it is now another file: device {} inode {}, was device {} inode {}",
                meta.dev(),
                meta.ino(),
                self.id.dev,
                self.id.ino
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it no longer exists".to_owned(),
            Err(e) => format!("it cannot be examined: {e}"),
        };
        Err(StoreError::FileReplaced {
            file: self.path.display().to_string(),
            change,
        })
    }
}

/// The database file and, once `run` took it, the lock file.
#[derive(Debug, Default)]
pub(super) struct OpenFiles {
    /// `None` for a database that is no file (`sqlite::memory:`).
    database: Option<Watched>,
    lock: OnceLock<Watched>,
}

impl OpenFiles {
    /// Watching `database`, unless it is none.
    pub(super) fn new(database: Option<Watched>) -> OpenFiles {
        OpenFiles {
            database,
            lock: OnceLock::new(),
        }
    }

    /// Watches the lock file too, from now on.
    pub(super) fn watch_lock(&self, lock: Watched) {
        let _ = self.lock.set(lock);
    }

    /// `Ok` while each path still names the file it was opened as.
    ///
    /// # Errors
    ///
    /// [`StoreError::FileReplaced`] naming the first file that is gone or
    /// another one.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        if let Some(db) = &self.database {
            db.check()?;
        }
        if let Some(lock) = self.lock.get() {
            lock.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched_file() -> (tempfile::TempDir, PathBuf, OpenFiles) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        std::fs::write(&path, b"data").unwrap();
        let files = OpenFiles::new(Some(Watched::at(&path).unwrap()));
        (dir, path, files)
    }

    #[test]
    fn the_same_file_passes_even_when_rewritten() {
        let (_dir, path, files) = watched_file();
        std::fs::write(&path, b"more data").unwrap();
        assert!(files.check().is_ok());
    }

    #[test]
    fn a_deleted_file_is_named_and_said_to_be_gone() {
        let (_dir, path, files) = watched_file();
        std::fs::remove_file(&path).unwrap();
        let err = files.check().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::FileReplaced { .. }), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("no longer exists"), "{text}");
        assert!(!err.is_transient());
    }

    #[test]
    fn a_file_replaced_by_another_is_refused() {
        let (dir, path, files) = watched_file();
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"data").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let text = files.check().unwrap_err().to_string();
        assert!(text.contains("another file"), "{text}");
    }

    #[test]
    fn a_deleted_lock_file_is_refused_once_watched() {
        let (dir, _path, files) = watched_file();
        let lock_path = dir.path().join("events.db.lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        files.watch_lock(Watched::open(&lock_path, &lock).unwrap());
        assert!(files.check().is_ok());
        std::fs::remove_file(&lock_path).unwrap();
        let text = files.check().unwrap_err().to_string();
        assert!(text.contains("events.db.lock"), "{text}");
    }

    #[test]
    fn a_database_that_is_no_file_is_not_watched() {
        assert!(OpenFiles::new(None).check().is_ok());
    }
}
