//! Storage with sqlx: SQLite (default, a file, WAL, synchronous commits) or PostgreSQL, one
//! schema and versioned migrations (`kms-core/migrations`). Every multi-row change is one
//! transaction.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("one or more objects already exist")]
    Exists,
    #[error(
        "the identifier {0} belonged to an object that was removed; identifiers are never reused"
    )]
    Retired(String),
    #[error("object {uid} is not owned by {user}")]
    NotOwner { uid: String, user: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "cannot connect to the database at {location}: {cause} (is it running and reachable from here? check database_url)"
    )]
    Unreachable { location: String, cause: String },
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row for {uid}: {reason}")]
    Corrupt { uid: String, reason: String },
    /// A grouped insert's transaction failed (the cause, shared by every insert it held).
    #[error("database: {0}")]
    Commit(String),
}

mod batch;
mod grants;
mod group;
mod locate;
mod objects;
mod rekey;
mod rewrap;

pub use grants::Grants;
pub use locate::{LocateFilter, Located};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
    /// SQLite allows one writer at a time; writers queue here instead of sleeping in
    /// SQLite's busy handler (which costs up to 100 ms per retry under contention).
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// New objects, committed in groups (see `batch`).
    inserts: batch::Inserts,
}

/// A write transaction, holding the SQLite writer lock when there is one.
struct Write<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// A query of the `Any` driver, as bound step by step.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values: the VALUES of a multi-row insert.
fn values(rows: usize, columns: usize) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect();
    rows.join(", ")
}

/// `$first, ..., $(first + count - 1)`.
fn placeholders(first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5);
    for n in first..first + count {
        if n > first {
            out.push_str(", ");
        }
        let _ = write!(out, "${n}");
    }
    out
}

fn corrupt(uid: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        uid: uid.to_owned(),
        reason: reason.to_string(),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE")
                || db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// `host:port/database` of a database URL, without user or password.
fn location(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path` or `postgres://...`).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::open_with(url, AnyPoolOptions::new().max_connections(max_connections)).await
    }

    /// A private database in memory, gone when the store is dropped: the seam for testing
    /// operations without files or servers. One connection, never closed (each SQLite memory
    /// connection is its own database).
    pub async fn memory() -> Result<Self, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        Self::open_with("sqlite::memory:", pool).await
    }

    async fn open_with(url: &str, pool: AnyPoolOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyConnectOptions::from_str(url)?;
        if backend == Backend::Postgres {
            // One connection first: the pool would only say "pool timed out", dropping why.
            let unreachable = |cause: String| StoreError::Unreachable {
                location: location(url),
                cause,
            };
            match tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::AnyConnection::connect_with(&options),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(unreachable(kms_common::error::chain(&e))),
                Err(_) => return Err(unreachable("no answer within 10 s".into())),
            }
        }
        let mut pool = pool.acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // A ping before each use would cost one more round trip to the connection's
            // worker thread per query, to check a file that cannot go away like a server.
            pool = pool.test_before_acquire(false).after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL for concurrent readers; FULL so an answered commit survives a crash.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let inserts = batch::Inserts::start(pool.clone(), writer.clone());
        Ok(Self {
            pool,
            backend,
            writer,
            inserts,
        })
    }

    async fn write(&self) -> Result<Write<'_>, StoreError> {
        let turn = match &self.writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        Ok(Write {
            tx: self.pool.begin().await?,
            _turn: turn,
        })
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    /// (committed insert transactions, inserts in them) since start: see `batch`.
    pub fn insert_counts(&self) -> (u64, u64) {
        self.inserts.counts()
    }

    pub fn pool_size(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}
