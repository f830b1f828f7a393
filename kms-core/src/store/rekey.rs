//! ReKey in one transaction (the old key updated, the new one created with the old one's
//! grants), and the automatic rotations a rotation policy schedules.

use sqlx::Row;

use super::{Store, StoreError};
use crate::object::ManagedObject;

impl Store {
    /// ReKey: the old object updated, the new one inserted with the old one's grants, atomically.
    pub async fn rekey(&self, old: &ManagedObject, new: &ManagedObject) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        Self::rekey_in(&mut w.tx, old, new).await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// ReKeyKeyPair: each old half updated and its replacement inserted with its grants, all
    /// in one transaction.
    pub async fn rekey_all(
        &self,
        pairs: &[(&ManagedObject, &ManagedObject)],
    ) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        for (old, new) in pairs {
            Self::rekey_in(&mut w.tx, old, new).await?;
        }
        w.tx.commit().await?;
        Ok(())
    }

    async fn rekey_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        old: &ManagedObject,
        new: &ManagedObject,
    ) -> Result<(), StoreError> {
        Self::update_in(tx, old).await?;
        Self::create_in(tx, new).await?;
        // Whoever could use the old key can use its replacement.
        sqlx::query(
            "INSERT INTO grants (uid, user_id, operation) \
             SELECT $1, user_id, operation FROM grants WHERE uid = $2",
        )
        .bind(&new.uid)
        .bind(&old.uid)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// An automatic rotation: as [`Self::rekey`], only if the old key is still due at `due`
    /// (another core sharing the database may have rotated it). False when it was not.
    pub async fn rekey_if_due(
        &self,
        old: &ManagedObject,
        new: &ManagedObject,
        due: i64,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let tx = &mut w.tx;
        let claimed =
            sqlx::query("UPDATE objects SET rotate_at = NULL WHERE uid = $1 AND rotate_at = $2")
                .bind(&old.uid)
                .bind(due)
                .execute(&mut **tx)
                .await?;
        if claimed.rows_affected() != 1 {
            return Ok(false);
        }
        Self::rekey_in(tx, old, new).await?;
        w.tx.commit().await?;
        Ok(true)
    }

    /// Keys whose automatic rotation is due at `now`: uid and due time, oldest due first.
    pub async fn due_for_rotation(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT uid, rotate_at FROM objects WHERE rotate_at IS NOT NULL AND rotate_at <= $1 \
             ORDER BY rotate_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("uid")?, r.try_get("rotate_at")?)))
            .collect()
    }
}
