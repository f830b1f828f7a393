//! Access grants: who may run which operation on an object (`*` = everyone).

use std::collections::BTreeSet;

use sqlx::Row;

use super::{Store, StoreError};

/// A grant row set: who may do which operations on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub user_id: String,
    pub operations: Vec<String>,
}

impl Store {
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

    /// The operations `user` may run on `uid` by grant: given to them or to everyone (`*`).
    pub async fn granted(&self, uid: &str, user: &str) -> Result<BTreeSet<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT operation FROM grants WHERE uid = $1 AND (user_id = $2 OR user_id = '*')",
        )
        .bind(uid)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("operation")?))
            .collect()
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
