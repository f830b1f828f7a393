//! Storage with sqlx: SQLite (default, a file, WAL, synchronous commits) or PostgreSQL, one
//! schema and versioned migrations (`kms-core/migrations`). Every multi-row change is one
//! transaction.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::object::{ManagedObject, Meta, State};

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
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row for {uid}: {reason}")]
    Corrupt { uid: String, reason: String },
}

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

/// A grant row set: who may do which operations on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub user_id: String,
    pub operations: Vec<String>,
}

pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
    /// SQLite allows one writer at a time; writers queue here instead of sleeping in
    /// SQLite's busy handler (which costs up to 100 ms per retry under contention).
    writer: Option<tokio::sync::Mutex<()>>,
}

/// A write transaction, holding the SQLite writer lock when there is one.
struct Write<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
}

macro_rules! columns {
    () => {
        "uid, owner, object_type, state, algorithm, length_bits, usage_mask, activation_date, \
         deactivation_date, created_at, last_change, wrapped_key, meta, wrapping"
    };
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

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path` or `postgres://...`).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyConnectOptions::from_str(url)?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
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
        let writer = (backend == Backend::Sqlite).then(|| tokio::sync::Mutex::new(()));
        Ok(Self {
            pool,
            backend,
            writer,
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

    pub fn pool_size(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    fn row_to_object(row: &AnyRow, tags: BTreeSet<String>) -> Result<ManagedObject, StoreError> {
        let uid: String = row.try_get("uid")?;
        let state: String = row.try_get("state")?;
        let wrapped: String = row.try_get("wrapped_key")?;
        let meta: String = row.try_get("meta")?;
        let wrapping: String = row.try_get("wrapping")?;
        Ok(ManagedObject {
            wrapping: crate::wrapping::Wrapping::parse(&wrapping)
                .ok_or_else(|| corrupt(&uid, "wrapping"))?,
            owner: row.try_get("owner")?,
            object_type: row.try_get("object_type")?,
            state: State::parse(&state).ok_or_else(|| corrupt(&uid, "state"))?,
            algorithm: row.try_get("algorithm")?,
            length_bits: i32::try_from(row.try_get::<i64, _>("length_bits")?)
                .map_err(|e| corrupt(&uid, e))?,
            usage_mask: i32::try_from(row.try_get::<i64, _>("usage_mask")?)
                .map_err(|e| corrupt(&uid, e))?,
            activation_date: row.try_get("activation_date")?,
            deactivation_date: row.try_get("deactivation_date")?,
            created_at: row.try_get("created_at")?,
            last_change: row.try_get("last_change")?,
            wrapped_key: B64.decode(wrapped).map_err(|e| corrupt(&uid, e))?,
            meta: serde_json::from_str::<Meta>(&meta).map_err(|e| corrupt(&uid, e))?,
            tags,
            uid,
        })
    }

    async fn tags_of(&self, uid: &str) -> Result<BTreeSet<String>, StoreError> {
        let rows = sqlx::query("SELECT tag FROM object_tags WHERE uid = $1")
            .bind(uid)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("tag")?))
            .collect()
    }

    pub async fn load(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM objects WHERE uid = $1"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(Self::row_to_object(&row, self.tags_of(uid).await?)?)),
            None => Ok(None),
        }
    }

    /// Takes `uid` for good in the registry of used uids: Exists when an object holds it,
    /// Retired when it belonged to an object that was removed.
    async fn take_uid(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        uid: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let taken = sqlx::query(
            "INSERT INTO uids (uid, first_used) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(uid)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(());
        }
        let live = sqlx::query("SELECT 1 AS one FROM objects WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&mut **tx)
            .await?;
        Err(match live {
            Some(_) => StoreError::Exists,
            None => StoreError::Retired(uid.to_owned()),
        })
    }

    /// Inserts the object row and its tags (the uid must already be taken).
    async fn insert_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&o.meta).map_err(|e| corrupt(&o.uid, e))?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO objects (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&o.uid)
        .bind(&o.owner)
        .bind(&o.object_type)
        .bind(o.state.name())
        .bind(&o.algorithm)
        .bind(i64::from(o.length_bits))
        .bind(i64::from(o.usage_mask))
        .bind(o.activation_date)
        .bind(o.deactivation_date)
        .bind(o.created_at)
        .bind(o.last_change)
        .bind(B64.encode(&o.wrapped_key))
        .bind(meta)
        .bind(o.wrapping.as_str())
        .execute(&mut **tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Exists),
            other => other?,
        };
        Self::write_tags(tx, o).await
    }

    /// A new object under a uid never used before.
    async fn create_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        Self::take_uid(tx, &o.uid, o.created_at).await?;
        Self::insert_in(tx, o).await
    }

    async fn write_tags(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM object_tags WHERE uid = $1")
            .bind(&o.uid)
            .execute(&mut **tx)
            .await?;
        for tag in &o.tags {
            sqlx::query("INSERT INTO object_tags (uid, tag) VALUES ($1, $2)")
                .bind(&o.uid)
                .bind(tag)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn update_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&o.meta).map_err(|e| corrupt(&o.uid, e))?;
        sqlx::query(
            "UPDATE objects SET state = $2, activation_date = $3, deactivation_date = $4, \
             last_change = $5, meta = $6, usage_mask = $7 WHERE uid = $1",
        )
        .bind(&o.uid)
        .bind(o.state.name())
        .bind(o.activation_date)
        .bind(o.deactivation_date)
        .bind(o.last_change)
        .bind(meta)
        .bind(i64::from(o.usage_mask))
        .execute(&mut **tx)
        .await?;
        Self::write_tags(tx, o).await
    }

    /// Inserts a new object with its tags, under a uid never used before.
    pub async fn insert(&self, o: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        Self::create_in(&mut w.tx, o).await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// True when `uid` is held by an object or was held by one that was removed.
    pub async fn uid_used(&self, uid: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM uids WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Import with ReplaceExisting, in one transaction: the object `o.uid` names is replaced
    /// only when `o.owner` owns it (its grants go with it); a uid never used is created; a
    /// removed one stays retired. Concurrent Creates of the same uid cannot slip in between
    /// the ownership check and the write (row lock on PostgreSQL, one writer on SQLite).
    pub async fn replace(&self, o: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        let select = match self.backend {
            Backend::Postgres => "SELECT owner FROM objects WHERE uid = $1 FOR UPDATE",
            Backend::Sqlite => "SELECT owner FROM objects WHERE uid = $1",
        };
        let owner: Option<String> = sqlx::query(select)
            .bind(&o.uid)
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get("owner"))
            .transpose()?;
        match owner {
            Some(owner) if owner != o.owner => {
                return Err(StoreError::NotOwner {
                    uid: o.uid.clone(),
                    user: o.owner.clone(),
                });
            }
            Some(_) => {
                Self::delete_in(tx, &o.uid).await?;
                Self::insert_in(tx, o).await?;
            }
            None => Self::create_in(tx, o).await?,
        }
        w.tx.commit().await?;
        Ok(())
    }

    /// Saves changed state, dates, meta and tags.
    pub async fn update(&self, o: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        Self::update_in(tx, o).await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// The uids and wrapped keys under `wrapping` (destroyed keys hold none).
    pub async fn wrapped_under(
        &self,
        wrapping: crate::wrapping::Wrapping,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT uid, wrapped_key FROM objects WHERE wrapping = $1 AND wrapped_key <> '' ORDER BY uid",
        )
        .bind(wrapping.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let uid: String = row.try_get("uid")?;
                let wrapped: String = row.try_get("wrapped_key")?;
                let bytes = B64.decode(wrapped).map_err(|e| corrupt(&uid, e))?;
                Ok((uid, bytes))
            })
            .collect()
    }

    /// Replaces one key's wrapped material and wrapping, if it is still under `from`.
    pub async fn rewrap(
        &self,
        uid: &str,
        from: crate::wrapping::Wrapping,
        to: crate::wrapping::Wrapping,
        wrapped: &[u8],
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "UPDATE objects SET wrapped_key = $2, wrapping = $3 WHERE uid = $1 AND wrapping = $4",
        )
        .bind(uid)
        .bind(B64.encode(wrapped))
        .bind(to.as_str())
        .bind(from.as_str())
        .execute(&mut *w.tx)
        .await?;
        w.tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Destroy: new state and the wrapped material erased, in one statement.
    pub async fn destroy(&self, o: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        Self::update_in(tx, o).await?;
        sqlx::query("UPDATE objects SET wrapped_key = '' WHERE uid = $1")
            .bind(&o.uid)
            .execute(&mut **tx)
            .await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// ReKey: the old object updated and the new one inserted atomically.
    pub async fn rekey(&self, old: &ManagedObject, new: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        Self::update_in(tx, old).await?;
        Self::create_in(tx, new).await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// Removes an object, its tags and its grants; its uid stays retired (never reused).
    pub async fn remove(&self, uid: &str) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        Self::delete_in(&mut w.tx, uid).await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// Deletes an object's row, tags and grants (not its uid, which stays taken).
    async fn delete_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        uid: &str,
    ) -> Result<(), StoreError> {
        for statement in [
            "DELETE FROM object_tags WHERE uid = $1",
            "DELETE FROM grants WHERE uid = $1",
            "DELETE FROM objects WHERE uid = $1",
        ] {
            sqlx::query(statement).bind(uid).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Uids of the objects that carry every tag in `tags`, oldest first.
    pub async fn uids_with_tags(&self, tags: &BTreeSet<String>) -> Result<Vec<String>, StoreError> {
        if tags.is_empty() {
            return self.all_uids().await;
        }
        let placeholders: Vec<String> = (1..=tags.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT t.uid FROM object_tags t JOIN objects o ON o.uid = t.uid WHERE t.tag IN ({}) \
             GROUP BY t.uid, o.created_at HAVING COUNT(DISTINCT t.tag) = {} ORDER BY o.created_at, t.uid",
            placeholders.join(", "),
            tags.len()
        );
        // Only numbered placeholders are generated; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for tag in tags {
            query = query.bind(tag);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("uid")?))
            .collect()
    }

    pub async fn all_uids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT uid FROM objects ORDER BY created_at, uid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("uid")?))
            .collect()
    }

    /// Uids and states of the objects `owner` owns.
    pub async fn owned(&self, owner: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT uid, state FROM objects WHERE owner = $1 ORDER BY created_at, uid")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("uid")?, r.try_get("state")?)))
            .collect()
    }

    /// Adds grants (idempotent) in one transaction.
    pub async fn grant(
        &self,
        uid: &str,
        user: &str,
        operations: &[String],
    ) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        for op in operations {
            // Granting what is already granted is not an error (SQLite and PostgreSQL both
            // understand ON CONFLICT DO NOTHING).
            sqlx::query(
                "INSERT INTO grants (uid, user_id, operation) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(uid)
            .bind(user)
            .bind(op)
            .execute(&mut **tx)
            .await?;
        }
        w.tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_grants(
        &self,
        uid: &str,
        user: &str,
        operations: &[String],
    ) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        for op in operations {
            sqlx::query("DELETE FROM grants WHERE uid = $1 AND user_id = $2 AND operation = $3")
                .bind(uid)
                .bind(user)
                .bind(op)
                .execute(&mut **tx)
                .await?;
        }
        w.tx.commit().await?;
        Ok(())
    }

    /// True when `user` (or everyone, `*`) holds a grant for `operation` on `uid`.
    pub async fn is_granted(
        &self,
        uid: &str,
        user: &str,
        operation: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM grants WHERE uid = $1 AND operation = $2 AND (user_id = $3 OR user_id = '*')",
        )
        .bind(uid)
        .bind(operation)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Every grant on `uid`, grouped by user.
    pub async fn grants_on(&self, uid: &str) -> Result<Vec<Grants>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, operation FROM grants WHERE uid = $1 ORDER BY user_id, operation",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Grants> = Vec::new();
        for row in rows {
            let user: String = row.try_get("user_id")?;
            let op: String = row.try_get("operation")?;
            match out.last_mut() {
                Some(g) if g.user_id == user => g.operations.push(op),
                _ => out.push(Grants {
                    user_id: user,
                    operations: vec![op],
                }),
            }
        }
        Ok(out)
    }

    /// Objects shared with `user` (directly or through `*`): uid, owner, state, operations.
    pub async fn obtained(
        &self,
        user: &str,
    ) -> Result<Vec<(String, String, String, Vec<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.uid AS uid, o.owner AS owner, o.state AS state, g.operation AS operation \
             FROM grants g JOIN objects o ON o.uid = g.uid \
             WHERE (g.user_id = $1 OR g.user_id = '*') AND o.owner <> $1 ORDER BY g.uid, g.operation",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, String, String, Vec<String>)> = Vec::new();
        for row in rows {
            let uid: String = row.try_get("uid")?;
            let op: String = row.try_get("operation")?;
            match out.last_mut() {
                Some(entry) if entry.0 == uid => {
                    if !entry.3.contains(&op) {
                        entry.3.push(op);
                    }
                }
                _ => out.push((uid, row.try_get("owner")?, row.try_get("state")?, vec![op])),
            }
        }
        Ok(out)
    }
}
