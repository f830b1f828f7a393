//! Moving stored keys from one key-encryption key to the other (`kms-core rewrap`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use super::{Store, StoreError, corrupt};

impl Store {
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
}
