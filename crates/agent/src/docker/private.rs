//! The images this node ever pulled with credentials (issue 15 item 2).
//!
//! The daemon's image cache is shared by every job on the node. A job with
//! credentials always pulls, so the registry checks its credentials every time; but
//! a job without credentials would find a private image another job pulled and run
//! it. So the runtime remembers the ids of the images that came with credentials,
//! and an anonymous job whose image resolves to one of them (by tag, by digest, by
//! image id) starts only if the registry serves that reference without credentials.
//!
//! Ids, not references, because one image has many names. The set is kept in a file
//! in the agent's state directory (written on each change), so a restarted agent
//! still knows; it only grows, and an id that no longer exists costs nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// Image ids ever pulled with credentials.
pub struct PrivateImages {
    file: Option<PathBuf>,
    ids: Mutex<BTreeSet<String>>,
}

impl PrivateImages {
    /// Reads the set from `file` (none yet, or no file: empty).
    pub fn load(file: Option<PathBuf>) -> Self {
        let ids = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice::<BTreeSet<String>>(&bytes).ok())
            .unwrap_or_default();
        Self { file, ids: Mutex::new(ids) }
    }

    /// Whether `id` was ever pulled with credentials.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.lock().expect("private images poisoned").contains(id)
    }

    /// Remembers `id`, writing the file when it is new.
    pub fn insert(&self, id: &str) {
        let mut ids = self.ids.lock().expect("private images poisoned");
        if !ids.insert(id.to_string()) {
            return;
        }
        if let Some(file) = &self.file {
            let json = serde_json::to_vec(&*ids).expect("a set of strings serialises");
            let tmp = file.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, file)) {
                tracing::warn!(file = %file.display(), error = %e, "cannot remember a private image across restarts");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("private-images.json");
        let images = PrivateImages::load(Some(file.clone()));
        assert!(!images.contains("sha256:a"));
        images.insert("sha256:a");
        images.insert("sha256:a");
        assert!(images.contains("sha256:a"));
        let again = PrivateImages::load(Some(file));
        assert!(again.contains("sha256:a"));
        assert!(!again.contains("sha256:b"));
        assert!(!PrivateImages::load(None).contains("sha256:a"));
    }
}
