//! The embedded store for `pipes dev` and the admin CLI: one SQLite database file in the
//! data dir, in WAL mode so a second process (the CLI) can read and write while the
//! server runs. Every write is a single transaction and is synced before it returns.

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

const APP_COLUMNS: &str = "id, slug, name, allowed_origins, created_at";

fn app_from_row(r: &Row<'_>) -> rusqlite::Result<Result<App, StoreError>> {
    let (id, slug, name, origins, created): (String, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(App {
            id: AppId::parse(&id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            slug: Slug::parse(&slug).map_err(corrupt("slug"))?,
            name: AppName::parse(&name).map_err(corrupt("name"))?,
            allowed_origins: from_json::<Vec<RedirectOrigin>>("allowed origins", &origins)?,
            created_at: time(created)?,
        })
    })())
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AppKeyRecord, StoreError>> {
    let (key_id, app_id, created, revoked): (String, String, i64, Option<i64>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        Ok(AppKeyRecord {
            key_id: KeyId::parse(&key_id).ok_or_else(|| StoreError::Corrupt("key id".into()))?,
            app_id: AppId::parse(&app_id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            created_at: time(created)?,
            revoked_at: revoked.map(time).transpose()?,
        })
    })())
}

const SESSION_COLUMNS: &str = "id, app_id, token_hash, status, redirect_url, metadata, \
     created_at, expires_at, completed_at, phone_number_id, error, abandons";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SignupSession, StoreError>> {
    let id: String = r.get(0)?;
    let app_id: String = r.get(1)?;
    let token_hash: String = r.get(2)?;
    let status: String = r.get(3)?;
    let redirect_url: String = r.get(4)?;
    let metadata: String = r.get(5)?;
    let created: i64 = r.get(6)?;
    let expires: i64 = r.get(7)?;
    let completed: Option<i64> = r.get(8)?;
    let phone_number_id: Option<String> = r.get(9)?;
    let error: Option<String> = r.get(10)?;
    let abandons: String = r.get(11)?;
    Ok((|| {
        Ok(SignupSession {
            id: SessionId::parse(&id).ok_or_else(|| StoreError::Corrupt("session id".into()))?,
            app_id: AppId::parse(&app_id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            token_hash: SecretHash::parse(&token_hash)
                .ok_or_else(|| StoreError::Corrupt("token hash".into()))?,
            status: SessionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt("status".into()))?,
            redirect_url: RedirectUrl::try_from(redirect_url).map_err(corrupt("redirect url"))?,
            metadata: from_json::<Metadata>("metadata", &metadata)?,
            created_at: time(created)?,
            expires_at: time(expires)?,
            completed_at: completed.map(time).transpose()?,
            phone_number_id,
            error: error
                .map(|e| from_json::<SessionFailure>("error", &e))
                .transpose()?,
            abandons: from_json::<Vec<Abandon>>("abandons", &abandons)?,
        })
    })())
}

/// One row through `map`, flattening the two error layers.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Option<T>, StoreError> {
    conn.query_row(sql, params, map)
        .optional()
        .map_err(db_err)?
        .transpose()
}

fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query_map(params, map).map_err(db_err)?;
    rows.map(|r| r.map_err(db_err).and_then(|x| x)).collect()
}

fn insert_key(conn: &Connection, key: &AppKeyRecord, hash: &SecretHash) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO app_keys (key_hash, key_id, app_id, created_at, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            hash.as_str(),
            key.key_id.as_str(),
            key.app_id.as_str(),
            millis(key.created_at),
            key.revoked_at.map(millis)
        ],
    )
}

#[async_trait]
impl AppStore for EmbeddedStore {
    async fn create_app(
        &self,
        app: &App,
        key: &AppKeyRecord,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let (app, key, hash) = (app.clone(), key.clone(), key_hash.clone());
        let origins = to_json(&app.allowed_origins)?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO apps (id, slug, name, allowed_origins, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        app.id.as_str(),
                        app.slug.as_str(),
                        app.name.as_str(),
                        origins,
                        millis(app.created_at)
                    ],
                )
                .and_then(|_| insert_key(&tx, &key, &hash));
            match inserted {
                Ok(_) => tx.commit().map_err(db_err),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("app slug or id")),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1");
            one(c, &sql, [id.as_str()], app_from_row)
        })
        .await
    }

    async fn app_by_slug(&self, slug: &Slug) -> Result<Option<App>, StoreError> {
        let slug = slug.clone();
        self.with(move |c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE slug = ?1");
            one(c, &sql, [slug.as_str()], app_from_row)
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, id");
            all(c, &sql, [], app_from_row)
        })
        .await
    }

    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError> {
        let (key, hash) = (key.clone(), key_hash.clone());
        self.with(move |c| match insert_key(c, &key, &hash) {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                let app_exists = c
                    .query_row(
                        "SELECT 1 FROM apps WHERE id = ?1",
                        [key.app_id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(db_err)?
                    .is_some();
                Err(if app_exists {
                    StoreError::Conflict("app key")
                } else {
                    StoreError::NotFound("app")
                })
            }
            Err(e) => Err(db_err(e)),
        })
        .await
    }

    async fn app_for_key(&self, key_hash: &SecretHash) -> Result<Option<App>, StoreError> {
        let hash = key_hash.clone();
        self.with(move |c| {
            let sql = "SELECT a.id, a.slug, a.name, a.allowed_origins, a.created_at \
                       FROM app_keys k JOIN apps a ON a.id = k.app_id \
                       WHERE k.key_hash = ?1 AND k.revoked_at IS NULL";
            one(c, sql, [hash.as_str()], app_from_row)
        })
        .await
    }

    async fn list_keys(&self, app: &AppId) -> Result<Vec<AppKeyRecord>, StoreError> {
        let app = app.clone();
        self.with(move |c| {
            let sql = "SELECT key_id, app_id, created_at, revoked_at FROM app_keys \
                       WHERE app_id = ?1 ORDER BY created_at, key_id";
            all(c, sql, [app.as_str()], key_from_row)
        })
        .await
    }

    async fn revoke_key(
        &self,
        app: &AppId,
        key: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (app, key) = (app.clone(), key.clone());
        self.with(move |c| {
            let found = c
                .execute(
                    "UPDATE app_keys SET revoked_at = COALESCE(revoked_at, ?3) \
                     WHERE app_id = ?1 AND key_id = ?2",
                    params![app.as_str(), key.as_str(), millis(at)],
                )
                .map_err(db_err)?;
            Ok(found == 1)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn insert_session(&self, s: &SignupSession) -> Result<(), StoreError> {
        let s = s.clone();
        let metadata = to_json(&s.metadata)?;
        let error = s.error.as_ref().map(to_json).transpose()?;
        let abandons = to_json(&s.abandons)?;
        self.with(move |c| {
            let sql = format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            );
            let res = c.execute(
                &sql,
                params![
                    s.id.as_str(),
                    s.app_id.as_str(),
                    s.token_hash.as_str(),
                    s.status.as_str(),
                    s.redirect_url.as_str(),
                    metadata,
                    millis(s.created_at),
                    millis(s.expires_at),
                    s.completed_at.map(millis),
                    s.phone_number_id,
                    error,
                    abandons
                ],
            );
            match res {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("session")),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SignupSession>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
            one(c, &sql, [id.as_str()], session_from_row)
        })
        .await
    }

    async fn session_by_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<SignupSession>, StoreError> {
        let hash = token_hash.clone();
        self.with(move |c| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1");
            one(c, &sql, [hash.as_str()], session_from_row)
        })
        .await
    }

    async fn claim_session(
        &self,
        token_hash: &SecretHash,
        claim_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let (hash, claim_id) = (token_hash.clone(), claim_id.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let sql = format!("SELECT {SESSION_COLUMNS}, claim_until FROM sessions WHERE token_hash = ?1");
            let found = tx
                .query_row(&sql, [hash.as_str()], |r| {
                    Ok((session_from_row(r)?, r.get::<_, Option<i64>>(12)?))
                })
                .optional()
                .map_err(db_err)?;
            let Some((session, claim_until)) = found else {
                return Ok(Claim::NotFound);
            };
            let mut session = session?;
            let lease_over = claim_until.is_none_or(|u| u < millis(now));
            if let Some(refused) = Claim::refusal(&session, now, lease_over) {
                return Ok(refused);
            }
            tx.execute(
                "UPDATE sessions SET status = 'completing', claim_id = ?2, claim_until = ?3 WHERE id = ?1",
                params![session.id.as_str(), claim_id, millis(lease_until)],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            session.status = SessionStatus::Completing;
            Ok(Claim::Won(Box::new(session)))
        })
        .await
    }

    async fn release_claim(
        &self,
        id: &SessionId,
        claim_id: &str,
        release: &Release,
    ) -> Result<bool, StoreError> {
        let (id, claim_id, release) = (id.clone(), claim_id.to_owned(), release.clone());
        let error = release.error.as_ref().map(to_json).transpose()?;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE sessions SET status = ?3, error = ?4, claim_id = NULL, claim_until = NULL \
                     WHERE id = ?1 AND claim_id = ?2",
                    params![id.as_str(), claim_id, release.status.as_str(), error],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_abandon(&self, id: &SessionId, abandon: &Abandon) -> Result<bool, StoreError> {
        let (id, abandon) = (id.clone(), abandon.clone());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let found: Option<(String, String)> = tx
                .query_row(
                    "SELECT status, abandons FROM sessions WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?;
            let Some((status, abandons)) = found else {
                return Ok(false);
            };
            let mut list: Vec<Abandon> = from_json("abandons", &abandons)?;
            if status == SessionStatus::Completed.as_str() || list.len() >= MAX_ABANDONS {
                return Ok(false);
            }
            list.push(abandon);
            tx.execute(
                "UPDATE sessions SET abandons = ?2 WHERE id = ?1",
                params![id.as_str(), to_json(&list)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}

fn number_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Number, StoreError>> {
    let record: String = r.get(0)?;
    Ok(from_json("number", &record))
}

#[async_trait]
impl NumberStore for EmbeddedStore {
    async fn number(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
    ) -> Result<Option<Number>, StoreError> {
        let (app, phone) = (app.clone(), phone.clone());
        self.with(move |c| {
            one(
                c,
                "SELECT record FROM numbers WHERE app_id = ?1 AND phone_number_id = ?2",
                [app.as_str(), phone.as_str()],
                number_from_row,
            )
        })
        .await
    }

    async fn number_owner(&self, phone: &PhoneNumberId) -> Result<Option<AppId>, StoreError> {
        let phone = phone.clone();
        self.with(move |c| {
            let owner: Option<String> = c
                .query_row(
                    "SELECT app_id FROM number_owners WHERE phone_number_id = ?1",
                    [phone.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            owner
                .map(|o| AppId::parse(&o).ok_or_else(|| StoreError::Corrupt("owner".into())))
                .transpose()
        })
        .await
    }

    async fn complete_signup(&self, done: &SignupCompletion) -> Result<(), CompletionError> {
        let done = done.clone();
        let record = to_json(&done.number)?;
        let history = done.history.as_ref().map(to_json).transpose()?;
        self.with(move |c| {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let n = &done.number;
                let claimed = tx
                    .execute(
                        "UPDATE sessions SET status = 'completed', completed_at = ?3, phone_number_id = ?4, \
                         error = NULL, claim_id = NULL, claim_until = NULL WHERE id = ?1 AND claim_id = ?2",
                        params![
                            done.session_id.as_str(),
                            done.claim_id,
                            millis(done.completed_at),
                            n.phone_number_id.as_str()
                        ],
                    )
                    .map_err(db_err)?;
                if claimed != 1 {
                    return Ok(Err(CompletionError::ClaimLost));
                }
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT app_id FROM number_owners WHERE phone_number_id = ?1",
                        [n.phone_number_id.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                match owner {
                    Some(o) if o != n.app_id.as_str() => return Ok(Err(CompletionError::OwnedByAnotherApp)),
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO number_owners (phone_number_id, app_id) VALUES (?1, ?2)",
                            params![n.phone_number_id.as_str(), n.app_id.as_str()],
                        )
                        .map_err(db_err)?;
                    }
                }
                if let Err(e) = write_number(&tx, n, &record, done.expected_version)? {
                    return Ok(Err(e));
                }
                if let Some(event) = &history {
                    insert_history(&tx, n, done.completed_at, event)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn save_number(
        &self,
        number: &Number,
        expected_version: u64,
        history: Option<&HealthEvent>,
    ) -> Result<(), WriteError> {
        let number = number.clone();
        let record = to_json(&number)?;
        let history = history.map(to_json).transpose()?;
        let at = number.updated_at;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            if write_number(&tx, &number, &record, Some(expected_version))?.is_err() {
                return Ok(Err(WriteError::Changed));
            }
            if let Some(event) = &history {
                insert_history(&tx, &number, at, event)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn remove_number(
        &self,
        removed: &Number,
        expected_version: u64,
        history: &HealthEvent,
    ) -> Result<(), WriteError> {
        let removed = removed.clone();
        let record = to_json(&removed)?;
        let history = to_json(history)?;
        let at = removed.updated_at;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            if write_number(&tx, &removed, &record, Some(expected_version))?.is_err() {
                return Ok(Err(WriteError::Changed));
            }
            tx.execute(
                "DELETE FROM number_owners WHERE phone_number_id = ?1 AND app_id = ?2",
                params![removed.phone_number_id.as_str(), removed.app_id.as_str()],
            )
            .map_err(db_err)?;
            insert_history(&tx, &removed, at, &history)?;
            tx.commit().map_err(db_err)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn list_numbers(
        &self,
        app: &AppId,
        status: Option<HealthStatus>,
        limit: usize,
        after: Option<&PhoneNumberId>,
    ) -> Result<NumberPage, StoreError> {
        let (app, after) = (
            app.clone(),
            after.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        );
        let status = status.map(HealthStatus::as_str);
        self.with(move |c| {
            let numbers = all(
                c,
                "SELECT record FROM numbers WHERE app_id = ?1 AND (?2 IS NULL OR status = ?2) \
                 AND phone_number_id > ?3 ORDER BY phone_number_id LIMIT ?4",
                params![app.as_str(), status, after, (limit + 1) as i64],
                number_from_row,
            )?;
            Ok(NumberPage::from_overfetch(numbers, limit))
        })
        .await
    }

    async fn live_numbers_in_waba(
        &self,
        waba: &WabaId,
    ) -> Result<Vec<(AppId, PhoneNumberId)>, StoreError> {
        let waba = waba.clone();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT app_id, phone_number_id FROM numbers WHERE waba_id = ?1 AND status != 'removed'",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([waba.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_err)?;
            rows.map(|r| {
                let (a, p) = r.map_err(db_err)?;
                Ok((
                    AppId::parse(&a).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
                    PhoneNumberId::parse(&p).ok_or_else(|| StoreError::Corrupt("phone".into()))?,
                ))
            })
            .collect()
        })
        .await
    }

    async fn history(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        let (app, phone) = (app.clone(), phone.clone());
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT event FROM health_history WHERE app_id = ?1 AND phone_number_id = ?2 \
                     ORDER BY at DESC, seq DESC LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![app.as_str(), phone.as_str(), limit as i64], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_err)?;
            rows.map(|r| from_json("history", &r.map_err(db_err)?))
                .collect()
        })
        .await
    }

    async fn due_numbers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueNumber>, StoreError> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT app_id, phone_number_id, next_check_at FROM numbers \
                     WHERE next_check_at IS NOT NULL AND next_check_at <= ?1 AND status != 'removed' \
                     ORDER BY next_check_at LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![millis(now), limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (a, p, due) = r.map_err(db_err)?;
                Ok(DueNumber {
                    app_id: AppId::parse(&a).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
                    phone_number_id: PhoneNumberId::parse(&p)
                        .ok_or_else(|| StoreError::Corrupt("phone".into()))?,
                    due_at: time(due)?,
                })
            })
            .collect()
        })
        .await
    }
}

/// A job taken from the embedded queue; invisible to other takers until it is acked,
/// retried, or its visibility timeout passes (then it is delivered again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: i64,
    pub body: String,
    /// Deliveries so far, this one included.
    pub attempts: u32,
}

impl EmbeddedStore {
    /// Takes up to `limit` visible jobs, oldest first, hiding them until `hidden_until`.
    pub async fn take_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hidden_until: DateTime<Utc>,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let jobs: Vec<QueuedJob> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, body, attempts FROM jobs WHERE dead = 0 AND visible_at <= ?1 \
                         ORDER BY id LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![millis(now), limit as i64], |r| {
                        Ok(QueuedJob {
                            id: r.get(0)?,
                            body: r.get(1)?,
                            attempts: r.get::<_, u32>(2)? + 1,
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            for job in &jobs {
                tx.execute(
                    "UPDATE jobs SET visible_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                    params![job.id, millis(hidden_until)],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(jobs)
        })
        .await
    }

    /// The job is done: it is deleted.
    pub async fn ack_job(&self, id: i64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute("DELETE FROM jobs WHERE id = ?1", [id])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// The job failed: it becomes visible again at `at`, or dead after too many tries.
    pub async fn retry_job(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET visible_at = ?2, last_error = ?3, dead = ?4 WHERE id = ?1",
                params![id, millis(at), error, dead],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// Jobs that failed every delivery (the local dead-letter queue).
    pub async fn dead_jobs(&self) -> Result<Vec<QueuedJob>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, body, attempts FROM jobs WHERE dead = 1 ORDER BY id")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(QueuedJob {
                        id: r.get(0)?,
                        body: r.get(1)?,
                        attempts: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl JobQueue for EmbeddedStore {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError(Box::new(e)))?;
        let now = Utc::now().timestamp_millis();
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (body, visible_at, created_at) VALUES (?1, 0, ?2)",
                params![body, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(|e| QueueError(Box::new(e)))
    }
}

/// Inserts (expected `None`) or replaces (at the expected version) a number record.
fn write_number(
    tx: &rusqlite::Transaction<'_>,
    n: &Number,
    record: &str,
    expected: Option<u64>,
) -> Result<Result<(), CompletionError>, StoreError> {
    let version = i64::try_from(n.version).map_err(|_| StoreError::Corrupt("version".into()))?;
    let next_check = n.health.next_check_at.map(millis);
    let changed = match expected {
        None => tx.execute(
            "INSERT OR IGNORE INTO numbers (app_id, phone_number_id, waba_id, status, next_check_at, version, record) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![n.app_id.as_str(), n.phone_number_id.as_str(), n.waba_id.as_str(), n.health.status.as_str(), next_check, version, record],
        ),
        Some(v) => tx.execute(
            "UPDATE numbers SET waba_id = ?3, status = ?4, next_check_at = ?5, version = ?6, record = ?7 \
             WHERE app_id = ?1 AND phone_number_id = ?2 AND version = ?8",
            params![n.app_id.as_str(), n.phone_number_id.as_str(), n.waba_id.as_str(), n.health.status.as_str(), next_check, version, record, i64::try_from(v).unwrap_or(i64::MAX)],
        ),
    }
    .map_err(db_err)?;
    Ok(if changed == 1 {
        Ok(())
    } else {
        Err(CompletionError::NumberChanged)
    })
}

fn insert_history(
    tx: &rusqlite::Transaction<'_>,
    n: &Number,
    at: DateTime<Utc>,
    event: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO health_history (app_id, phone_number_id, at, event) VALUES (?1, ?2, ?3, ?4)",
        params![
            n.app_id.as_str(),
            n.phone_number_id.as_str(),
            millis(at),
            event
        ],
    )
    .map_err(db_err)?;
    Ok(())
}
