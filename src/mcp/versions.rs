//! The protocol versions served, of both eras: the handshake eras (a session opened by
//! `initialize`) and the stateless 2026-07-28 era (a per-request envelope). A leaf: the core, the
//! envelope checks and sessions all read it, and it imports nothing.

/// Protocol versions of the handshake eras, newest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
pub const LATEST_HANDSHAKE_VERSION: &str = HANDSHAKE_VERSIONS[0];

/// The stateless era's versions, newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// Every version served, both eras, newest first.
pub fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .chain(HANDSHAKE_VERSIONS)
        .copied()
        .collect()
}
