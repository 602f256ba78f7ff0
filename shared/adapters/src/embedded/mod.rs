//! The embedded store for `pipes dev` and the admin CLI: one SQLite database file in the
//! data dir, in WAL mode so a second process (the CLI) can read and write while the
//! server runs. Every write is a single transaction and is synced before it returns.

mod apps;
mod dashboard;
mod events;
mod history;
mod jobs;
mod numbers;
mod rows;
mod sessions;

pub use jobs::{EventLane, Lane, QueuedJob};

use history::*;
use rows::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::codec::{from_json, to_json};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pipes_core::ports::{
    Claim, CompletionError, DueNumber, MAX_ABANDONS, NumberPage, NumberStore, Release,
    SignupCompletion, WriteError,
};
use pipes_core::queue::{Job, JobQueue, QueueError};
use pipes_core::session::{Abandon, SessionFailure};
use pipes_core::{
    App, AppId, AppKeyRecord, AppName, AppStore, HealthEvent, HealthStatus, KeyId, Metadata,
    Number, PhoneNumberId, RedirectOrigin, RedirectUrl, SecretHash, SessionId, SessionStatus,
    SessionStore, SignupSession, Slug, StoreError, WabaId,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE apps (
    id              TEXT PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE app_keys (
    key_hash   TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL UNIQUE,
    app_id     TEXT NOT NULL REFERENCES apps(id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX app_keys_by_app ON app_keys(app_id, created_at);
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    token_hash      TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    redirect_url    TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    phone_number_id TEXT,
    error           TEXT,
    abandons        TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE sessions ADD COLUMN claim_id TEXT;
ALTER TABLE sessions ADD COLUMN claim_until INTEGER;
CREATE TABLE numbers (
    app_id          TEXT NOT NULL REFERENCES apps(id),
    phone_number_id TEXT NOT NULL,
    waba_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    next_check_at   INTEGER,
    version         INTEGER NOT NULL,
    record          TEXT NOT NULL,
    PRIMARY KEY (app_id, phone_number_id)
);
CREATE INDEX numbers_due ON numbers(next_check_at);
CREATE INDEX numbers_by_waba ON numbers(waba_id);
CREATE TABLE number_owners (
    phone_number_id TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id)
);
CREATE TABLE health_history (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    at              INTEGER NOT NULL,
    event           TEXT NOT NULL
);
CREATE INDEX health_history_by_number ON health_history(app_id, phone_number_id, at);
CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    body       TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_error TEXT,
    dead       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_visible ON jobs(dead, visible_at);
"#,
    r#"
CREATE TABLE login_links (
    token_hash TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX sessions_by_app ON sessions(app_id, created_at);
CREATE TABLE dashboard_sessions (
    cookie_hash TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE login_links ADD COLUMN minted_by TEXT;
ALTER TABLE dashboard_sessions ADD COLUMN minted_by TEXT;
"#,
    r#"
CREATE TABLE finish_reports (
    waba_id    TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    at         INTEGER NOT NULL,
    PRIMARY KEY (waba_id, session_id)
);
CREATE TABLE inbox (
    id          TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    record      TEXT NOT NULL,
    outcome     TEXT,
    note        TEXT,
    settled_at  INTEGER
);
CREATE INDEX inbox_by_age ON inbox(received_at);
CREATE INDEX inbox_by_outcome ON inbox(outcome, settled_at);
CREATE TABLE endpoints (
    app_id        TEXT PRIMARY KEY REFERENCES apps(id),
    record        TEXT NOT NULL,
    failing_since INTEGER
);
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'work';
CREATE INDEX jobs_by_lane ON jobs(lane, dead, visible_at);
ALTER TABLE apps ADD COLUMN settings TEXT;
CREATE TABLE rate_counters (
    bucket       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_counters_by_expiry ON rate_counters(expires_at);
CREATE TABLE idempotency (
    app_id       TEXT NOT NULL REFERENCES apps(id),
    key_hash     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    lease_until  INTEGER,
    status       INTEGER,
    body         TEXT,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, key_hash)
);
CREATE TABLE events (
    app_id     TEXT NOT NULL REFERENCES apps(id),
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (app_id, id)
);
"#,
];

pub const DB_FILE: &str = "pipes.db";

/// The SQLite-backed store. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`, which is made private to
    /// the user (0700) when this creates it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir).map_err(StoreError::unavailable)?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(StoreError::unavailable)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(StoreError::unavailable)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(StoreError::unavailable)?;
        migrate(&mut conn).map_err(StoreError::unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file (for operators and tests that inspect raw rows).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(StoreError::unavailable)?
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip_while(|(v, _)| *v <= done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable(e)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::ConstraintViolation))
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt("timestamp".into()))
}

fn corrupt(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}
