//! Versioned dynamic configuration: every applied version of every service
//! and endpoint, and which version is active.
//!
//! Behind a trait so a PostgreSQL store can serve a cluster later; SQLite
//! (embedded, one file, transactions) is the default. A change is written
//! in one transaction — new versions plus the active pointers — so a crash at
//! any moment leaves either the old state or the new one, never a mix.

mod sqlite;

pub use sqlite::SqliteStore;

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Endpoint,
    /// Who calls through the gateway (API keys belong to one).
    Consumer,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Endpoint, Kind::Consumer];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Endpoint => "endpoint",
            Kind::Consumer => "consumer",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "service" => Some(Kind::Service),
            "endpoint" => Some(Kind::Endpoint),
            "consumer" => Some(Kind::Consumer),
            _ => None,
        }
    }
}

/// An API key as stored: its id, its consumer and its HMAC, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub consumer: String,
    /// HMAC-SHA-256 of the key under the gateway's secret, hex.
    pub hmac: String,
    pub created_ms: u64,
}

/// What is known about one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    pub version: u64,
    pub created_ms: u64,
    pub author: String,
    pub comment: String,
    /// SHA-1 of the content (hex); of the empty string for a deletion.
    pub hash: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub meta: VersionMeta,
    /// Canonical JSON of the entity; `None` records a deletion.
    pub content: Option<String>,
}

/// One entity's new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub content: Option<String>,
    pub author: String,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

pub fn content_hash(content: Option<&str>) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(content.unwrap_or("").as_bytes());
    sha.digest().to_string()
}

pub trait ConfigStore: Send {
    /// Every entity's active version (deleted ones excluded).
    fn active(&self) -> Result<Vec<(Kind, String, Version)>, StoreError>;
    /// An entity's versions, oldest first.
    fn versions(&self, kind: Kind, name: &str) -> Result<Vec<VersionMeta>, StoreError>;
    fn get(&self, kind: Kind, name: &str, version: u64) -> Result<Option<Version>, StoreError>;
    /// The active version number of an entity, if it has one (also a deletion).
    fn active_version(&self, kind: Kind, name: &str) -> Result<Option<u64>, StoreError>;
    /// Records each change as a new version and makes it active — all of
    /// them or none. Returns the new version numbers.
    fn commit(&mut self, changes: &[Change]) -> Result<Vec<u64>, StoreError>;
    /// Makes an existing version active again (nothing new is recorded).
    fn activate(&mut self, kind: Kind, name: &str, version: u64) -> Result<(), StoreError>;

    /// Records a new API key (its HMAC). Keys are not versions: applying an
    /// old consumer version never brings a revoked key back.
    fn key_add(&mut self, key: &StoredKey) -> Result<(), StoreError>;
    /// Keys not revoked, of one consumer or of all.
    fn keys(&self, consumer: Option<&str>) -> Result<Vec<StoredKey>, StoreError>;
    /// Revokes a key; `false` when the consumer has no such key.
    fn key_revoke(&mut self, consumer: &str, id: &str) -> Result<bool, StoreError>;
    /// Revokes every key of a consumer (it was deleted: one created later
    /// under the same name starts with none).
    fn keys_revoke_all(&mut self, consumer: &str) -> Result<usize, StoreError>;
}
