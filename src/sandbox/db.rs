//! The sandbox's storage: one SQLite database (WAL) under the data dir, versioned migrations, and
//! a tenant-scoped document store that the category modules build on.
//!
//! Every resource is a row of `objects`: its API representation as JSON (`body`), a private JSON
//! side (`private`: secrets' hashes, extracted text, …) that is never served, and `seq`, a
//! monotonically increasing number that orders lists newest-first and makes cursors stable while
//! rows are inserted. Every query is scoped by `tenant_id`: isolation is structural, not a check.
//!
//! Concurrency: one writer connection (behind a mutex) and a small pool of `query_only` read
//! connections (`Db::read`); under WAL a read transaction sees a consistent snapshot and never
//! waits for the writer.
//!
//! Durability: each request runs in one transaction, committed before the response is written;
//! WAL with `synchronous=NORMAL` survives a `kill -9` of the process (the OS holds the WAL), which
//! is the crash the sandbox promises to survive.

use crate::sandbox::error::{ApiError, READ_INTERRUPTED};
use crate::sandbox::ids;
use crate::sync::lock;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The ordered migrations; the database's `user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: tenants, keys, the document store, the event outbox, file blobs.
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        secret_sha256 TEXT NOT NULL UNIQUE
     );
     CREATE TABLE objects (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        private TEXT NOT NULL DEFAULT '{}'
     );
     CREATE UNIQUE INDEX objects_by_id ON objects(tenant_id, kind, id);
     CREATE INDEX objects_by_kind ON objects(tenant_id, kind, seq);
     CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        content BLOB NOT NULL
     );",
    // 2: full-text search over knowledge (titles, descriptions and extracted text).
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(
        tenant_id UNINDEXED, knowledge_id UNINDEXED, file_id UNINDEXED, title, body,
        tokenize = 'porter unicode61'
     );",
    // 3: webhook deliveries: one row per (event, endpoint), retried until delivered or given up.
    "CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        status TEXT NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT
     );
     CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);",
    // 4: the knowledge worker's poll (every 100 ms, across tenants): exactly the items waiting
    // to be processed, so that finding them never scans the objects.
    "CREATE INDEX objects_processing ON objects(seq)
       WHERE kind = 'knowledge' AND json_extract(body, '$.status') = 'processing';",
    // 5: the answers kept for Idempotency-Key (see idempotency.rs).
    "CREATE TABLE idempotency (
        tenant_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, key)
     );",
    // 6: OAuth (see oauth.rs): registered clients, one-time codes, grants (a user's consent to
    // a client) and their tokens. Codes and tokens are kept as SHA-256 only; times are epoch
    // seconds.
    "CREATE TABLE oauth_clients (
        client_id TEXT PRIMARY KEY,
        metadata TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE oauth_codes (
        code_sha256 TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        grant_id TEXT
     );
     CREATE TABLE oauth_grants (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE oauth_tokens (
        sha256 TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        audience TEXT NOT NULL,
        scope TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        parent TEXT,
        revoked TEXT
     );
     CREATE INDEX oauth_tokens_by_grant ON oauth_tokens(grant_id);
     CREATE INDEX oauth_tokens_by_parent ON oauth_tokens(parent) WHERE parent IS NOT NULL;",
];

/// How many read connections serve reads beside the one writer (WAL lets them read a
/// consistent snapshot while a write transaction is open).
///
/// Why 16 on a machine of any size: a tenant may hold all of them but one (`limits`), and a GET
/// that finds its tenant's share taken waits and then runs its read transaction again. With 4,
/// 64 concurrent GETs of one tenant spent most of their time doing that: 134–158 µs of CPU per
/// get_task instead of 81 µs, and about 60 % of the calls/s (benches/gateway.rs, direct REST
/// at c=64).
/// An idle connection costs a few file descriptors and SQLite's page cache only as it fills.
pub const READERS: usize = 16;

/// The database, shared by the request handlers and the background workers.
#[derive(Clone)]
pub struct Db {
    /// The one writer behind a std mutex: SQLite serialises writers anyway, every critical
    /// section is synchronous (it never spans an `.await`), and it runs on the blocking pool.
    connection: Arc<Mutex<Connection>>,
    /// Read-only connections (`query_only`), so that a read never waits behind a writer. Empty
    /// for an in-memory database, whose reads then take the writer.
    readers: Option<Arc<Readers>>,
}

/// A small pool of read connections: a permit per connection, the idle ones on a stack.
struct Readers {
    permits: Arc<tokio::sync::Semaphore>,
    idle: Mutex<Vec<Reader>>,
    /// How long one read may run before it is interrupted (`READ_TIME_LIMIT`).
    limit: std::time::Duration,
}

/// One read connection, with what it takes to stop a read that runs too long.
struct Reader {
    connection: Connection,
    interrupt: Arc<rusqlite::InterruptHandle>,
    /// Whether a read is running on it: the watchdog interrupts only while it is, under this
    /// lock, so an interrupt can never reach the connection's next read.
    running: Arc<Mutex<bool>>,
}

/// The longest one read may run: then SQLite interrupts it and the client gets a 400 asking
/// for a narrower request. Reads (lists, search, reports) are bounded by a tenant's own data,
/// which has no hard cap; this caps their time.
pub const READ_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Db {
    /// Opens (creating if needed) `DIR/sandbox.sqlite3` and runs pending migrations.
    pub fn open(data_dir: &Path) -> Result<Db, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create the data dir {}: {e}", data_dir.display()))?;
        let path = data_dir.join("sandbox.sqlite3");
        let connection =
            Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut db = Db::configure(connection).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(&path)
                .and_then(|reader| {
                    reader.pragma_update(None, "query_only", true)?;
                    reader.busy_timeout(std::time::Duration::from_secs(5))?;
                    Ok(reader)
                })
                .map_err(|e| format!("cannot open {} to read: {e}", path.display()))?;
            readers.push(Reader {
                interrupt: Arc::new(reader.get_interrupt_handle()),
                connection: reader,
                running: Arc::new(Mutex::new(false)),
            });
        }
        db.readers = Some(Arc::new(Readers {
            permits: Arc::new(tokio::sync::Semaphore::new(readers.len())),
            idle: Mutex::new(readers),
            limit: READ_TIME_LIMIT,
        }));
        Ok(db)
    }

    /// The same database with reads stopped after `limit` instead of `READ_TIME_LIMIT`.
    pub fn with_read_time_limit(mut self, limit: std::time::Duration) -> Db {
        if let Some(readers) = self.readers.as_mut().and_then(Arc::get_mut) {
            readers.limit = limit;
        }
        self
    }

    /// An in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Db, String> {
        Db::configure(Connection::open_in_memory().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }

    fn configure(mut connection: Connection) -> rusqlite::Result<Db> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
            let tx = connection.transaction_with_behavior(IMMEDIATE)?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Db {
            connection: Arc::new(Mutex::new(connection)),
            readers: None,
        })
    }

    /// Runs `work` in one read transaction (a snapshot) on a read connection, without waiting
    /// for the writer; any write in `work` fails (the connection is `query_only`). Without read
    /// connections (in memory) it is an ordinary transaction on the writer.
    pub async fn read<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T, ApiError> + Send + 'static,
    {
        let Some(pool) = self.readers.clone() else {
            return self.transaction(work).await;
        };
        // The semaphore is never closed; a permit guarantees an idle connection, and it is held
        // until the connection is back (even if this future is dropped meanwhile).
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let taken = lock(&pool.idle).pop();
        let Some(mut reader) = taken else {
            return Err(ApiError::internal("a read permit without a connection"));
        };
        let (interrupt, running) = (reader.interrupt.clone(), reader.running.clone());
        *lock(&running) = true;
        let held = pool.clone();
        // Runs to its end even if this future is dropped: it returns the connection and permit.
        let mut reading = tokio::task::spawn_blocking(move || {
            let result = (|| -> Result<T, ApiError> {
                let tx = reader.connection.transaction()?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            *lock(&reader.running) = false;
            lock(&held.idle).push(reader);
            drop(permit);
            result
        });
        let joined = match tokio::time::timeout(pool.limit, &mut reading).await {
            Ok(joined) => joined,
            Err(_) => {
                {
                    let running = lock(&running);
                    if *running {
                        interrupt.interrupt();
                    }
                }
                let limit = pool.limit.as_secs_f64();
                reading.await.map(|result| {
                    result.map_err(|error| match error.message.as_str() {
                        READ_INTERRUPTED => ApiError::bad_request(format!(
                            "{READ_INTERRUPTED} (the limit is {limit} s)"
                        )),
                        _ => error,
                    })
                })
            }
        };
        joined.map_err(ApiError::internal)?
    }

    /// Runs `work` in one transaction on the blocking pool; commits only if it succeeds.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T, ApiError> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = lock(&connection);
            let tx = connection.transaction_with_behavior(IMMEDIATE)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Synchronous access, for start-up (seeding) and the CLI.
    pub fn transaction_blocking<T>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut connection = lock(&self.connection);
        let tx = connection.transaction_with_behavior(IMMEDIATE)?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// The writer's transactions take the write lock when they begin, so that another writer of the
/// file (the CLI's `tenant create`, a sandbox being restarted, a test's SQL) makes them wait
/// (`busy_timeout`) instead of failing when a deferred transaction's read turns into a write.
const IMMEDIATE: rusqlite::TransactionBehavior = rusqlite::TransactionBehavior::Immediate;

/// A filter on a list: `json_extract(body, path) = value` (or `IS NULL` for `Value::Null`).
pub struct Filter<'a> {
    pub path: &'a str,
    pub value: Value,
}

impl<'a> Filter<'a> {
    /// A filter on a top-level field of the body, e.g. `Filter::field("status", json!("open"))`.
    pub fn field(name: &'a str, value: Value) -> Filter<'a> {
        Filter { path: name, value }
    }
}

/// [`from`, `to`) on a timestamp field of the body, for `Store::list_by_time`.
pub struct TimeWindow {
    /// The field's name: fixed in code, never client input (it is spliced into SQL).
    pub field: &'static str,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

/// One page of a list, newest first.
pub struct Page {
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
}

impl Page {
    /// `{data, next_cursor}`, the spec's list shape.
    pub fn into_json(self) -> Value {
        serde_json::json!({"data": self.data, "next_cursor": self.next_cursor})
    }
}

/// Where a page starts: the `seq` of the last row of the previous page, encoded opaquely.
pub fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

pub fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    decode_cursor_text(cursor)?
        .strip_prefix("v1:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid_cursor)
}

/// A cursor's text (they are URL-safe base64), for modules with cursors of their own shape.
pub fn decode_cursor_text(cursor: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid_cursor())?;
    String::from_utf8(bytes).map_err(|_| invalid_cursor())
}

/// The one answer to a cursor this API did not hand out.
pub fn invalid_cursor() -> ApiError {
    ApiError::invalid_field(
        "cursor",
        "is not a cursor this API returned; omit it to start over",
    )
}

type SqlValue = rusqlite::types::Value;

/// Appends `AND json_extract(body, $.path) = value` (or `IS NULL`) per filter, values bound.
fn push_filters(sql: &mut String, values: &mut Vec<SqlValue>, filters: &[Filter]) {
    for filter in filters {
        values.push(format!("$.{}", filter.path).into());
        if filter.value.is_null() {
            sql.push_str(&format!(
                " AND json_extract(body, ?{}) IS NULL",
                values.len()
            ));
        } else {
            values.push(sql_value(&filter.value));
            sql.push_str(&format!(
                " AND json_extract(body, ?{}) = ?{}",
                values.len() - 1,
                values.len()
            ));
        }
    }
}

fn sql_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(Sql::Integer)
            .unwrap_or_else(|| Sql::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

fn parse(text: String) -> Result<Value, ApiError> {
    serde_json::from_str(&text).map_err(ApiError::internal)
}

/// The tenant-scoped document store, over one transaction.
pub struct Store<'t> {
    tx: &'t Transaction<'t>,
    tenant_id: &'t str,
}

impl<'t> Store<'t> {
    pub fn new(tx: &'t Transaction<'t>, tenant_id: &'t str) -> Store<'t> {
        Store { tx, tenant_id }
    }

    pub fn tx(&self) -> &Transaction<'t> {
        self.tx
    }

    pub fn tenant_id(&self) -> &str {
        self.tenant_id
    }

    pub fn insert(&self, kind: &str, body: &Value) -> Result<(), ApiError> {
        self.insert_with_private(kind, body, &serde_json::json!({}))
    }

    pub fn insert_with_private(
        &self,
        kind: &str,
        body: &Value,
        private: &Value,
    ) -> Result<(), ApiError> {
        let id = body["id"]
            .as_str()
            .ok_or_else(|| ApiError::internal("a stored object needs an id"))?;
        self.tx.execute(
            "INSERT INTO objects (tenant_id, kind, id, body, private) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                self.tenant_id,
                kind,
                id,
                body.to_string(),
                private.to_string()
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, kind: &str, id: &str) -> Result<Option<Value>, ApiError> {
        self.column(
            "SELECT body FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND id = ?3",
            kind,
            id,
        )
    }

    /// Like `get`, but a missing object is the API's 404 naming it.
    pub fn require(&self, kind: &str, id: &str) -> Result<Value, ApiError> {
        self.get(kind, id)?
            .ok_or_else(|| ApiError::not_found(format!("no {kind} {id} in this tenant")))
    }

    pub fn private(&self, kind: &str, id: &str) -> Result<Value, ApiError> {
        self.column(
            "SELECT private FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND id = ?3",
            kind,
            id,
        )?
        .ok_or_else(|| ApiError::not_found(format!("no {kind} {id} in this tenant")))
    }

    /// The one JSON column `sql` selects for object `kind`/`id` of this tenant, if it exists.
    fn column(&self, sql: &str, kind: &str, id: &str) -> Result<Option<Value>, ApiError> {
        let text: Option<String> = self
            .tx
            .query_row(sql, params![self.tenant_id, kind, id], |row| row.get(0))
            .optional()?;
        text.map(parse).transpose()
    }

    /// Replaces the body (and keeps `seq`, so list order is creation order).
    pub fn update(&self, kind: &str, body: &Value) -> Result<(), ApiError> {
        let id = body["id"]
            .as_str()
            .ok_or_else(|| ApiError::internal("a stored object needs an id"))?;
        let changed = self.tx.execute(
            "UPDATE objects SET body = ?4 WHERE tenant_id = ?1 AND kind = ?2 AND id = ?3",
            params![self.tenant_id, kind, id, body.to_string()],
        )?;
        if changed == 0 {
            return Err(ApiError::not_found(format!(
                "no {kind} {id} in this tenant"
            )));
        }
        Ok(())
    }

    pub fn set_private(&self, kind: &str, id: &str, private: &Value) -> Result<(), ApiError> {
        self.tx.execute(
            "UPDATE objects SET private = ?4 WHERE tenant_id = ?1 AND kind = ?2 AND id = ?3",
            params![self.tenant_id, kind, id, private.to_string()],
        )?;
        Ok(())
    }

    /// Deletes an object; a missing one is the API's 404.
    pub fn delete(&self, kind: &str, id: &str) -> Result<(), ApiError> {
        let changed = self.tx.execute(
            "DELETE FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND id = ?3",
            params![self.tenant_id, kind, id],
        )?;
        if changed == 0 {
            return Err(ApiError::not_found(format!(
                "no {kind} {id} in this tenant"
            )));
        }
        Ok(())
    }

    /// One page of `kind`, newest first, with every filter applied. `cursor` is the previous
    /// page's `next_cursor`; `limit` is 1..=100.
    pub fn list(
        &self,
        kind: &str,
        filters: &[Filter],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, ApiError> {
        let before = cursor.map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let mut sql = String::from(
            "SELECT seq, body FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND seq < ?3",
        );
        let mut values: Vec<SqlValue> = vec![
            self.tenant_id.to_string().into(),
            kind.to_string().into(),
            before.into(),
        ];
        push_filters(&mut sql, &mut values, filters);
        sql.push_str(" ORDER BY seq DESC");
        self.fetch_page(&sql, values, limit)
    }

    /// One page of `kind` whose timestamp field lies in `window`, newest first by that field,
    /// with the filters. Rows
    /// may be recorded after the fact, so the order is by that field, not by insertion; the
    /// cursor still names a row's seq, and the page after it starts strictly after that row's
    /// (time, seq), which keeps pages stable while rows are inserted.
    pub fn list_by_time(
        &self,
        kind: &str,
        window: &TimeWindow,
        filters: &[Filter],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, ApiError> {
        let time = format!("json_extract(body, '$.{}')", window.field);
        let mut sql = format!(
            "SELECT seq, body FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND {time} >= ?3 AND {time} < ?4"
        );
        let mut values: Vec<SqlValue> = vec![
            self.tenant_id.to_string().into(),
            kind.to_string().into(),
            ids::timestamp(window.from).into(),
            ids::timestamp(window.to).into(),
        ];
        push_filters(&mut sql, &mut values, filters);
        if let Some(cursor) = cursor {
            let seq = decode_cursor(cursor)?;
            let at: String = self
                .tx
                .query_row(
                    &format!(
                        "SELECT {time} FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND seq = ?3"
                    ),
                    params![self.tenant_id, kind, seq],
                    |row| row.get::<_, Option<String>>(0),
                )
                .optional()?
                .flatten()
                .ok_or_else(invalid_cursor)?;
            values.push(at.into());
            values.push(seq.into());
            let (a, s) = (values.len() - 1, values.len());
            sql.push_str(&format!(
                " AND ({time} < ?{a} OR ({time} = ?{a} AND seq < ?{s}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY {time} DESC, seq DESC"));
        self.fetch_page(&sql, values, limit)
    }

    /// Runs a `SELECT seq, body … ORDER BY …` for one page of `limit` (fetching one more row to
    /// know whether another page follows).
    fn fetch_page(&self, sql: &str, values: Vec<SqlValue>, limit: usize) -> Result<Page, ApiError> {
        let sql = format!("{sql} LIMIT {}", limit + 1);
        let mut statement = self.tx.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut page = Vec::new();
        for row in rows {
            page.push(row?);
        }
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(seq, _)| encode_cursor(*seq))
        } else {
            None
        };
        let data = page
            .into_iter()
            .map(|(_, body)| parse(body))
            .collect::<Result<_, _>>()?;
        Ok(Page { data, next_cursor })
    }

    /// Every object of `kind` (oldest first), for reports and aggregate checks.
    pub fn all(&self, kind: &str) -> Result<Vec<Value>, ApiError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT body FROM objects WHERE tenant_id = ?1 AND kind = ?2 ORDER BY seq",
        )?;
        let rows =
            statement.query_map(params![self.tenant_id, kind], |row| row.get::<_, String>(0))?;
        let mut all = Vec::new();
        for row in rows {
            all.push(parse(row?)?);
        }
        Ok(all)
    }

    /// Every object of `kind` (oldest first) that passes every filter.
    pub fn all_matching(&self, kind: &str, filters: &[Filter]) -> Result<Vec<Value>, ApiError> {
        let mut sql = String::from("SELECT body FROM objects WHERE tenant_id = ?1 AND kind = ?2");
        let mut values: Vec<SqlValue> =
            vec![self.tenant_id.to_string().into(), kind.to_string().into()];
        push_filters(&mut sql, &mut values, filters);
        sql.push_str(" ORDER BY seq");
        let mut statement = self.tx.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
            row.get::<_, String>(0)
        })?;
        let mut all = Vec::new();
        for row in rows {
            all.push(parse(row?)?);
        }
        Ok(all)
    }

    /// Records an event for webhook delivery, in the same transaction as the change it reports.
    pub fn emit(&self, event_type: &str, data: &Value) -> Result<(), ApiError> {
        let id = crate::sandbox::ids::new_id("evt_");
        self.tx.execute(
            "INSERT INTO events (id, tenant_id, type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, self.tenant_id, event_type, data.to_string(), crate::sandbox::ids::now_string()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_that_runs_too_long_is_stopped_and_its_connection_serves_again() {
        let dir =
            std::env::temp_dir().join(format!("trainar-db-read-limit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::open(&dir)
            .unwrap()
            .with_read_time_limit(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let endless = db
            .read(|tx| {
                let n: i64 = tx.query_row(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                    [],
                    |row| row.get(0),
                )?;
                Ok(n)
            })
            .await;
        let error = endless.unwrap_err();
        assert_eq!(error.status.as_u16(), 400, "{}", error.message);
        assert!(error.message.contains("narrow it"), "{}", error.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Every connection of the pool still reads, the interrupted one included.
        for _ in 0..READERS * 2 {
            let one: i64 = db
                .read(|tx| Ok(tx.query_row("SELECT 1", [], |row| row.get(0))?))
                .await
                .unwrap();
            assert_eq!(one, 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
