//! The SQLite store: one file (or memory), WAL, synchronous writes.

use super::{content_hash, Change, ConfigStore, Kind, StoreError, StoredKey, Version, VersionMeta};
use rusqlite::{params, Connection, OptionalExtension};

pub struct SqliteStore {
    db: Connection,
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`; `None`: in memory.
    pub fn open(path: Option<&std::path::Path>) -> Result<SqliteStore, StoreError> {
        let db = match path {
            Some(p) => Connection::open(p).map_err(|e| StoreError(format!("{}: {e}", p.display())))?,
            None => Connection::open_in_memory().map_err(err)?,
        };
        // WAL + FULL: a committed apply survives a crash (even kill -9 mid-apply
        // leaves the last committed transaction, never half of one).
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS versions (
                 kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL, author TEXT NOT NULL, comment TEXT NOT NULL,
                 hash TEXT NOT NULL, content TEXT,
                 PRIMARY KEY (kind, name, version));
             CREATE TABLE IF NOT EXISTS active (
                 kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                 PRIMARY KEY (kind, name));
             CREATE TABLE IF NOT EXISTS api_keys (
                 id TEXT PRIMARY KEY, consumer TEXT NOT NULL, hmac TEXT NOT NULL UNIQUE,
                 created_ms INTEGER NOT NULL, revoked_ms INTEGER);",
        )
        .map_err(err)?;
        Ok(SqliteStore { db })
    }
}

/// A version from the `COLS` columns starting at column `at`.
fn version_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Version> {
    Ok(Version {
        meta: VersionMeta {
            version: r.get::<_, i64>(at)? as u64,
            created_ms: r.get::<_, i64>(at + 1)? as u64,
            author: r.get(at + 2)?,
            comment: r.get(at + 3)?,
            hash: r.get(at + 4)?,
            deleted: r.get::<_, i64>(at + 5)? != 0,
        },
        content: r.get(at + 6)?,
    })
}

fn row_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<Version> {
    version_at(r, 0)
}

const COLS: &str = "v.version, v.created_ms, v.author, v.comment, v.hash, v.content IS NULL, v.content";

impl ConfigStore for SqliteStore {
    fn active(&self) -> Result<Vec<(Kind, String, Version)>, StoreError> {
        let mut st = self
            .db
            .prepare(&format!(
                "SELECT v.kind, v.name, {COLS} FROM active a JOIN versions v
                 ON v.kind = a.kind AND v.name = a.name AND v.version = a.version
                 WHERE v.content IS NOT NULL ORDER BY v.kind, v.name"
            ))
            .map_err(err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, version_at(r, 2)?)))
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, name, v) = row.map_err(err)?;
            let kind = Kind::parse(&kind).ok_or_else(|| StoreError(format!("unknown kind {kind:?} in the store")))?;
            out.push((kind, name, v));
        }
        Ok(out)
    }

    fn versions(&self, kind: Kind, name: &str) -> Result<Vec<VersionMeta>, StoreError> {
        let mut st = self
            .db
            .prepare(&format!("SELECT {COLS} FROM versions v WHERE v.kind = ?1 AND v.name = ?2 ORDER BY v.version"))
            .map_err(err)?;
        let rows = st.query_map(params![kind.as_str(), name], row_version).map_err(err)?;
        rows.map(|r| r.map(|v| v.meta).map_err(err)).collect()
    }

    fn get(&self, kind: Kind, name: &str, version: u64) -> Result<Option<Version>, StoreError> {
        self.db
            .query_row(
                &format!("SELECT {COLS} FROM versions v WHERE v.kind = ?1 AND v.name = ?2 AND v.version = ?3"),
                params![kind.as_str(), name, version as i64],
                row_version,
            )
            .optional()
            .map_err(err)
    }

    fn active_version(&self, kind: Kind, name: &str) -> Result<Option<u64>, StoreError> {
        self.db
            .query_row("SELECT version FROM active WHERE kind = ?1 AND name = ?2", params![kind.as_str(), name], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(|n| n as u64))
            .map_err(err)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.transaction().map_err(err)?;
        let mut numbers = Vec::with_capacity(changes.len());
        let now = now_ms() as i64;
        for c in changes {
            let next: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE kind = ?1 AND name = ?2",
                    params![c.kind.as_str(), c.name],
                    |r| r.get(0),
                )
                .map_err(err)?;
            tx.execute(
                "INSERT INTO versions (kind, name, version, created_ms, author, comment, hash, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![c.kind.as_str(), c.name, next, now, c.author, c.comment, content_hash(c.content.as_deref()), c.content],
            )
            .map_err(err)?;
            tx.execute(
                "INSERT INTO active (kind, name, version) VALUES (?1, ?2, ?3) ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version",
                params![c.kind.as_str(), c.name, next],
            )
            .map_err(err)?;
            numbers.push(next as u64);
        }
        tx.commit().map_err(err)?;
        Ok(numbers)
    }

    fn activate(&mut self, kind: Kind, name: &str, version: u64) -> Result<(), StoreError> {
        let tx = self.db.transaction().map_err(err)?;
        let exists: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM versions WHERE kind = ?1 AND name = ?2 AND version = ?3",
                params![kind.as_str(), name, version as i64],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)?
            > 0;
        if !exists {
            return Err(StoreError(format!("{} {name:?} has no version {version}", kind.as_str())));
        }
        tx.execute(
            "INSERT INTO active (kind, name, version) VALUES (?1, ?2, ?3) ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version",
            params![kind.as_str(), name, version as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn key_add(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO api_keys (id, consumer, hmac, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![key.id, key.consumer, key.hmac, key.created_ms as i64],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn keys(&self, consumer: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        let mut st = self
            .db
            .prepare(
                "SELECT id, consumer, hmac, created_ms FROM api_keys
                 WHERE revoked_ms IS NULL AND (?1 IS NULL OR consumer = ?1) ORDER BY created_ms, id",
            )
            .map_err(err)?;
        let rows = st
            .query_map(params![consumer], |r| {
                Ok(StoredKey {
                    id: r.get(0)?,
                    consumer: r.get(1)?,
                    hmac: r.get(2)?,
                    created_ms: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(err)?;
        rows.map(|r| r.map_err(err)).collect()
    }

    fn keys_revoke_all(&mut self, consumer: &str) -> Result<usize, StoreError> {
        self.db
            .execute(
                "UPDATE api_keys SET revoked_ms = ?2 WHERE consumer = ?1 AND revoked_ms IS NULL",
                params![consumer, now_ms() as i64],
            )
            .map_err(err)
    }

    fn key_revoke(&mut self, consumer: &str, id: &str) -> Result<bool, StoreError> {
        self.db
            .execute(
                "UPDATE api_keys SET revoked_ms = ?3 WHERE consumer = ?1 AND id = ?2 AND revoked_ms IS NULL",
                params![consumer, id, now_ms() as i64],
            )
            .map(|n| n > 0)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, content: Option<&str>) -> Change {
        Change {
            kind: Kind::Service,
            name: name.into(),
            content: content.map(Into::into),
            author: "t".into(),
            comment: "c".into(),
        }
    }

    #[test]
    fn versions_active_and_activate() {
        let mut s = SqliteStore::open(None).unwrap();
        assert_eq!(s.commit(&[change("a", Some("{\"x\":1}")), change("b", Some("{}"))]).unwrap(), vec![1, 1]);
        assert_eq!(s.commit(&[change("a", Some("{\"x\":2}"))]).unwrap(), vec![2]);
        let active = s.active().unwrap();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].2.content.as_deref(), Some("{\"x\":2}"));
        assert_eq!(active[0].2.meta.hash, content_hash(Some("{\"x\":2}")));
        s.activate(Kind::Service, "a", 1).unwrap();
        assert_eq!(s.active().unwrap()[0].2.meta.version, 1);
        assert!(s.activate(Kind::Service, "a", 9).is_err());
        // A deletion is a version too, and hides the entity.
        assert_eq!(s.commit(&[change("b", None)]).unwrap(), vec![2]);
        assert_eq!(s.active().unwrap().len(), 1);
        assert_eq!(
            s.versions(Kind::Service, "b").unwrap().iter().map(|v| v.deleted).collect::<Vec<_>>(),
            vec![false, true]
        );
        assert_eq!(s.active_version(Kind::Service, "b").unwrap(), Some(2));
    }

    #[test]
    fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("wasp-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let _ = std::fs::remove_file(&path);
        {
            let mut s = SqliteStore::open(Some(&path)).unwrap();
            s.commit(&[change("a", Some("1"))]).unwrap();
            s.commit(&[change("a", Some("2"))]).unwrap();
        }
        let s = SqliteStore::open(Some(&path)).unwrap();
        assert_eq!(s.active().unwrap()[0].2.content.as_deref(), Some("2"));
        assert_eq!(s.versions(Kind::Service, "a").unwrap().len(), 2);
    }
}
