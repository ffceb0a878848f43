//! The Google Cloud project a key belongs to. Files, cached contents, batches and
//! stored interactions live in the project of the key that made them, and only a key
//! of that project can read, use or delete them (docs/gemini-wire.md): a proxy that
//! shares keys among clients must send each later call with a key of the right project.

use super::MockConfig;

/// The project of `key`: its entry in `MockConfig::projects`, else a project of its own.
pub(crate) fn project_of(cfg: &MockConfig, key: &str) -> String {
    cfg.projects
        .get(key)
        .cloned()
        .unwrap_or_else(|| format!("key:{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_project_only_when_configured_to() {
        let mut cfg = MockConfig::default();
        cfg.projects.insert("a".into(), "p1".into());
        cfg.projects.insert("b".into(), "p1".into());
        assert_eq!(project_of(&cfg, "a"), project_of(&cfg, "b"));
        assert_ne!(project_of(&cfg, "a"), project_of(&cfg, "c"));
        assert_ne!(project_of(&cfg, "c"), project_of(&cfg, "d"));
    }
}
