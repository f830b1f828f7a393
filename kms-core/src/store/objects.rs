//! Objects and their tags: load, create under a never-used uid, update, replace, remove.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    AnyQuery, Backend, Store, StoreError, corrupt, is_unique_violation, placeholders, values,
};
use crate::object::{Algorithm, ManagedObject, Meta, ObjectType, State};

macro_rules! columns {
    () => {
        "uid, owner, object_type, state, algorithm, length_bits, usage_mask, activation_date, \
         deactivation_date, created_at, last_change, wrapped_key, meta, wrapping, rotate_at"
    };
}

impl Store {
    fn row_to_object(row: &AnyRow, tags: BTreeSet<String>) -> Result<ManagedObject, StoreError> {
        let uid: String = row.try_get("uid")?;
        let state: String = row.try_get("state")?;
        let wrapped: String = row.try_get("wrapped_key")?;
        let meta: String = row.try_get("meta")?;
        let wrapping: String = row.try_get("wrapping")?;
        let object_type: String = row.try_get("object_type")?;
        let algorithm: String = row.try_get("algorithm")?;
        Ok(ManagedObject {
            wrapping: crate::wrapping::Wrapping::parse(&wrapping)
                .ok_or_else(|| corrupt(&uid, "wrapping"))?,
            owner: row.try_get("owner")?,
            object_type: ObjectType::parse(&object_type)
                .ok_or_else(|| corrupt(&uid, "object_type"))?,
            state: State::parse(&state).ok_or_else(|| corrupt(&uid, "state"))?,
            algorithm: match algorithm.as_str() {
                "" => None,
                name => Some(Algorithm::parse(name).ok_or_else(|| corrupt(&uid, "algorithm"))?),
            },
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
            rotate_at: row.try_get("rotate_at")?,
            tags,
            uid,
        })
    }

    /// The object and its tags in one query (one round trip to the database: every
    /// cryptographic operation starts here): a row per tag, or one row with no tag.
    pub async fn load(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        static QUERY: LazyLock<String> = LazyLock::new(|| {
            let columns: Vec<String> = columns!()
                .split(',')
                .map(|c| format!("o.{}", c.trim()))
                .collect();
            format!(
                "SELECT {}, t.tag AS tag FROM objects o LEFT JOIN object_tags t ON t.uid = o.uid \
                 WHERE o.uid = $1",
                columns.join(", ")
            )
        });
        let rows = sqlx::query(QUERY.as_str())
            .bind(uid)
            .fetch_all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut tags = BTreeSet::new();
        for row in &rows {
            if let Some(tag) = row.try_get::<Option<String>, _>("tag")? {
                tags.insert(tag);
            }
        }
        Ok(Some(Self::row_to_object(first, tags)?))
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
        Err(Self::why_taken(tx, uid).await?)
    }

    /// Why `uid` could not be taken: Exists when an object holds it, Retired when it belonged
    /// to an object that was removed.
    pub(super) async fn why_taken(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        uid: &str,
    ) -> Result<StoreError, StoreError> {
        let live = sqlx::query("SELECT 1 AS one FROM objects WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(match live {
            Some(_) => StoreError::Exists,
            None => StoreError::Retired(uid.to_owned()),
        })
    }

    /// `INSERT INTO objects` for `rows` objects, each bound by [`Self::bind_object`].
    pub(super) fn insert_objects_sql(rows: usize) -> String {
        format!(
            "INSERT INTO objects ({}) VALUES {}",
            columns!(),
            values(rows, columns!().split(',').count())
        )
    }

    /// Binds the columns of `o`, in the order of `columns!()`.
    pub(super) fn bind_object<'q>(
        query: AnyQuery<'q>,
        o: &'q ManagedObject,
    ) -> Result<AnyQuery<'q>, StoreError> {
        let meta = serde_json::to_string(&o.meta).map_err(|e| corrupt(&o.uid, e))?;
        Ok(query
            .bind(&o.uid)
            .bind(&o.owner)
            .bind(o.object_type.name())
            .bind(o.state.name())
            .bind(o.algorithm.map_or("", Algorithm::name))
            .bind(i64::from(o.length_bits))
            .bind(i64::from(o.usage_mask))
            .bind(o.activation_date)
            .bind(o.deactivation_date)
            .bind(o.created_at)
            .bind(o.last_change)
            .bind(B64.encode(&o.wrapped_key))
            .bind(meta)
            .bind(o.wrapping.as_str())
            .bind(o.rotate_at))
    }

    /// The distinct names of `o` (one row each in `object_names`).
    pub(super) fn names(o: &ManagedObject) -> BTreeSet<&str> {
        o.meta.names.iter().map(|n| n.value.as_str()).collect()
    }

    /// Inserts the object row and its tags (the uid must already be taken).
    async fn insert_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| Store::insert_objects_sql(1));
        let inserted = Self::bind_object(sqlx::query(SQL.as_str()), o)?
            .execute(&mut **tx)
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Exists),
            other => other?,
        };
        Self::write_labels(tx, o, false).await
    }

    /// A new object under a uid never used before.
    pub(super) async fn create_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        Self::take_uid(tx, &o.uid, o.created_at).await?;
        Self::insert_in(tx, o).await
    }

    /// Writes the tag and name rows of `o` (both are searched in SQL), replacing the old ones
    /// when `replace` (a new object has none).
    async fn write_labels(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
        replace: bool,
    ) -> Result<(), StoreError> {
        let old_rows = [
            "DELETE FROM object_tags WHERE uid = $1",
            "DELETE FROM object_names WHERE uid = $1",
        ];
        for statement in old_rows.into_iter().filter(|_| replace) {
            sqlx::query(statement)
                .bind(&o.uid)
                .execute(&mut **tx)
                .await?;
        }
        for tag in &o.tags {
            sqlx::query("INSERT INTO object_tags (uid, tag) VALUES ($1, $2)")
                .bind(&o.uid)
                .bind(tag)
                .execute(&mut **tx)
                .await?;
        }
        for name in Self::names(o) {
            sqlx::query("INSERT INTO object_names (uid, name) VALUES ($1, $2)")
                .bind(&o.uid)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn update_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        o: &ManagedObject,
    ) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&o.meta).map_err(|e| corrupt(&o.uid, e))?;
        sqlx::query(
            "UPDATE objects SET state = $2, activation_date = $3, deactivation_date = $4, \
             last_change = $5, meta = $6, usage_mask = $7, rotate_at = $8 WHERE uid = $1",
        )
        .bind(&o.uid)
        .bind(o.state.name())
        .bind(o.activation_date)
        .bind(o.deactivation_date)
        .bind(o.last_change)
        .bind(meta)
        .bind(i64::from(o.usage_mask))
        .bind(o.rotate_at)
        .execute(&mut **tx)
        .await?;
        Self::write_labels(tx, o, true).await
    }

    /// Inserts a new object with its tags under a uid never used before; returns once durable, committed together with other inserts
    /// arriving meanwhile (group commit, see `batch`).
    pub async fn insert(&self, o: &ManagedObject) -> Result<(), StoreError> {
        self.insert_all(&[o]).await
    }

    /// Inserts objects made together (a key pair, a certificate with its keys): all or none,
    /// grouped with other inserts like [`Self::insert`].
    pub async fn insert_all(&self, objects: &[&ManagedObject]) -> Result<(), StoreError> {
        let objects = objects.iter().map(|&o| o.clone()).collect();
        self.inserts.insert(objects).await
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
            "DELETE FROM object_names WHERE uid = $1",
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
        let sql = format!(
            "SELECT t.uid FROM object_tags t JOIN objects o ON o.uid = t.uid WHERE t.tag IN ({}) \
             GROUP BY t.uid, o.created_at HAVING COUNT(DISTINCT t.tag) = {} ORDER BY o.created_at, t.uid",
            placeholders(1, tags.len()),
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
}
