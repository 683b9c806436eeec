//! The last configuration a node of several applied, kept in its `--data-dir`
//! (`applied-cache.json`), so that a node restarted while etcd is unreachable serves what it
//! served before instead of nothing; it catches up when etcd answers.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use lb_core::model::ServiceConfig;

pub const FILE_NAME: &str = "applied-cache.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cached {
    zone: String,
    revision: i64,
    config: ServiceConfig,
}

/// Where a node keeps its cache.
#[derive(Debug, Clone)]
pub struct AppliedCache {
    path: PathBuf,
}

impl AppliedCache {
    pub fn in_dir(dir: &Path) -> Self {
        Self { path: dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached configuration of `zone` and its revision, if there is one and it reads.
    pub fn load(&self, zone: &str) -> Option<(ServiceConfig, i64)> {
        let bytes = std::fs::read(&self.path).ok()?;
        match serde_json::from_slice::<Cached>(&bytes) {
            Ok(cached) if cached.zone == zone => Some((cached.config, cached.revision)),
            Ok(cached) => {
                warn!(path = %self.path.display(), cached = %cached.zone, zone, "the cached configuration is another zone's: not used");
                None
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "the cached configuration does not read: not used");
                None
            }
        }
    }

    /// Replaces the cache (written aside, then renamed: a crash leaves the old one or the new).
    pub fn store(&self, zone: &str, revision: i64, config: &ServiceConfig) {
        let cached = Cached { zone: zone.to_string(), revision, config: config.clone() };
        let tmp = self.path.with_extension("json.new");
        let written = serde_json::to_vec(&cached)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            warn!(path = %self.path.display(), error = %e, "could not cache the applied configuration");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::model::Farm;

    #[test]
    fn a_cached_configuration_reads_back_for_its_zone_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AppliedCache::in_dir(dir.path());
        assert!(cache.load("a").is_none());
        let config = ServiceConfig { farms: vec![Farm { farm_id: Some(1), ..Default::default() }], ..Default::default() };
        cache.store("a", 42, &config);
        assert_eq!(cache.load("a"), Some((config, 42)));
        assert!(cache.load("b").is_none());
        std::fs::write(cache.path(), b"{").unwrap();
        assert!(cache.load("a").is_none(), "a damaged cache is not used");
    }
}
