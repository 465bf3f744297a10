//! [`Tmpfs`]: a small tmpfs mounted on a fresh directory, for tests that
//! need a disk that fills up; unmounted when dropped (also when the test
//! panics). Mounting needs root: without it the test fails, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=…`, e.g. `"4m"`) on a new
    /// directory. Panics when not root, or when the mount fails.
    pub fn mount(size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "this test needs root to mount a tmpfs (a disk that fills up): run it as root"
        );
        let dir = tempfile::tempdir().expect("a directory to mount on");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a {size} tmpfs on {:?}: {status}",
            dir.path()
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file `name` until the tmpfs is full (`ENOSPC`); returns
    /// its path and how many bytes it holds.
    pub fn fill(&self, name: &str) -> (PathBuf, u64) {
        use std::io::Write;
        let path = self.dir.path().join(name);
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0xa5u8; 4096];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill {path:?}: {e}"),
            }
        }
        (path, written)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon that panicked may still hold files open there.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
