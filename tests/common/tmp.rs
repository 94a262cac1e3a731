//! Temporary directories: tests that persist run in parallel (threads of one binary, and
//! several binaries) and must never share, or lock, one data directory.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// A fresh, empty directory under the system temp dir, unique to this process, `tag`, a
/// per-process counter and the moment. Left in place (a child server may still use it); see
/// [`TempDir`] for one removed on drop.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "partyring-{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A [`temp_dir`] removed (with everything in it) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(temp_dir(tag))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Core `core`'s storage log in this directory.
    pub fn log(&self, core: usize) -> PathBuf {
        self.0.join(format!("core-{core}.log"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
