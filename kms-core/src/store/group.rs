//! Writing one group of new objects. A group is written with multi-row statements: one INSERT
//! takes the uids of all its objects (`ON CONFLICT DO NOTHING RETURNING uid` says which were
//! free), one inserts the objects, one their tags, one their names (none when no object of the
//! group has any) — with BEGIN and COMMIT at most six round trips to the database however many
//! Creates the group holds (each Create alone took five). An insert that finds one of its uids
//! taken fails alone with Exists or Retired; the uids it did take are given back in the same
//! transaction. Inserts naming a uid already named in the group, and every insert of a group
//! whose statements failed, are then committed one by one, so that an insert fails only for a
//! reason of its own.

use std::collections::HashSet;

use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::batch::{Counts, Job};
use super::{Store, StoreError, placeholders, values};
use crate::object::ManagedObject;

/// Rows per multi-row statement: at most 64 × 15 bound values, far below the limits of SQLite
/// (32,766) and PostgreSQL (65,535).
const ROWS: usize = 64;

/// Why a group was not committed.
enum Failure {
    /// A statement failed: the group is rolled back and its inserts are tried one by one.
    Statement,
    /// BEGIN or COMMIT failed: every insert of the group fails with this cause.
    Commit(String),
}

/// Commits `jobs`, as one group where it can: returns each job's outcome, in order.
pub(super) async fn commit(
    pool: &AnyPool,
    jobs: &[Job],
    counts: &Counts,
) -> Vec<Result<(), StoreError>> {
    let (grouped, mut alone) = split(jobs);
    let mut results: Vec<Option<Result<(), StoreError>>> = jobs.iter().map(|_| None).collect();
    match group(pool, jobs, &grouped).await {
        Ok(outcomes) => {
            counts.committed(outcomes.iter().filter(|r| r.is_ok()).count());
            for (&i, outcome) in grouped.iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        Err(Failure::Commit(cause)) => {
            for &i in &grouped {
                results[i] = Some(Err(StoreError::Commit(cause.clone())));
            }
        }
        Err(Failure::Statement) => alone.extend(grouped),
    }
    for i in alone {
        let outcome = insert_alone(pool, &jobs[i].objects).await;
        counts.committed(usize::from(outcome.is_ok()));
        results[i] = Some(outcome);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Commit("insert not attempted".into()))))
        .collect()
}

/// The jobs that can share one group (no uid named twice), and the others, by index.
fn split(jobs: &[Job]) -> (Vec<usize>, Vec<usize>) {
    let mut named = HashSet::new();
    let (mut grouped, mut alone) = (Vec::new(), Vec::new());
    for (i, job) in jobs.iter().enumerate() {
        let uids: HashSet<&str> = job.objects.iter().map(|o| o.uid.as_str()).collect();
        if uids.len() == job.objects.len() && uids.is_disjoint(&named) {
            named.extend(uids);
            grouped.push(i);
        } else {
            alone.push(i);
        }
    }
    (grouped, alone)
}

/// One transaction for the jobs `members` (indexes into `jobs`).
async fn group(
    pool: &AnyPool,
    jobs: &[Job],
    members: &[usize],
) -> Result<Vec<Result<(), StoreError>>, Failure> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| Failure::Commit(e.to_string()))?;
    // Dropping the transaction on an error rolls it back.
    let outcomes = write_group(&mut tx, jobs, members)
        .await
        .map_err(|_| Failure::Statement)?;
    tx.commit()
        .await
        .map_err(|e| Failure::Commit(e.to_string()))?;
    Ok(outcomes)
}

async fn write_group(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    jobs: &[Job],
    members: &[usize],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let objects: Vec<&ManagedObject> = members.iter().flat_map(|&i| &jobs[i].objects).collect();
    let mut free = HashSet::new();
    for chunk in objects.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO uids (uid, first_used) VALUES {} ON CONFLICT DO NOTHING RETURNING uid",
            values(chunk.len(), 2)
        );
        // Only numbered placeholders are generated; every value is bound.
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for o in chunk {
            query = query.bind(&o.uid).bind(o.created_at);
        }
        for row in query.fetch_all(&mut **tx).await? {
            free.insert(row.try_get::<String, _>("uid")?);
        }
    }
    let mut outcomes = Vec::with_capacity(members.len());
    let mut kept = Vec::with_capacity(objects.len());
    let mut given_back = Vec::new();
    for &i in members {
        let objects = &jobs[i].objects;
        match objects.iter().find(|o| !free.contains(&o.uid)) {
            None => {
                kept.extend(objects);
                outcomes.push(Ok(()));
            }
            Some(taken) => {
                outcomes.push(Err(Store::why_taken(tx, &taken.uid).await?));
                let mine = objects.iter().filter(|o| free.contains(&o.uid));
                given_back.extend(mine.map(|o| o.uid.as_str()));
            }
        }
    }
    for chunk in given_back.chunks(ROWS) {
        let sql = format!(
            "DELETE FROM uids WHERE uid IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for uid in chunk {
            query = query.bind(*uid);
        }
        query.execute(&mut **tx).await?;
    }
    for chunk in kept.chunks(ROWS) {
        let mut query = sqlx::query(AssertSqlSafe(Store::insert_objects_sql(chunk.len())));
        for o in chunk {
            query = Store::bind_object(query, o)?;
        }
        query.execute(&mut **tx).await?;
    }
    let tags: Vec<(&str, &str)> = kept
        .iter()
        .flat_map(|o| o.tags.iter().map(|t| (o.uid.as_str(), t.as_str())))
        .collect();
    insert_pairs(tx, "INSERT INTO object_tags (uid, tag) VALUES ", &tags).await?;
    let names: Vec<(&str, &str)> = kept
        .iter()
        .flat_map(|o| Store::names(o).into_iter().map(|n| (o.uid.as_str(), n)))
        .collect();
    insert_pairs(tx, "INSERT INTO object_names (uid, name) VALUES ", &names).await?;
    Ok(outcomes)
}

/// Inserts (uid, value) rows with `insert` (a fixed `INSERT ... VALUES ` prefix).
async fn insert_pairs(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    insert: &'static str,
    rows: &[(&str, &str)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS) {
        let sql = format!("{insert}{}", values(chunk.len(), 2));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (uid, value) in chunk {
            query = query.bind(*uid).bind(*value);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// One job's objects in a transaction of their own (the writer lock is already held).
async fn insert_alone(pool: &AnyPool, objects: &[ManagedObject]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for object in objects {
        Store::create_in(&mut tx, object).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::commit;
    use crate::kmip::testing;
    use crate::object::{ManagedObject, Name};
    use crate::store::batch::{Counts, Inserts, Job};
    use crate::store::{LocateFilter, StoreError};

    fn job(objects: Vec<ManagedObject>) -> Job {
        let (answer, _) = tokio::sync::oneshot::channel();
        Job { objects, answer }
    }

    /// One group holding every case: free inserts commit together (tags and names with
    /// them); an insert naming a uid already named in the group, one whose second uid is
    /// held, and one whose uid was retired fail alone, and the uid the second one took first
    /// is free again afterwards.
    #[tokio::test]
    async fn a_group_stores_its_free_inserts_and_fails_each_other_one_for_its_own_reason() {
        let kms = testing::kms().await;
        let held = testing::create(&kms, "alice", vec![]).await;
        let retired = testing::create(&kms, "alice", vec![]).await;
        let existing = kms.store.load(&held).await.ok().flatten();
        let existing = existing.unwrap_or_else(|| panic!("{held} not stored"));
        kms.store
            .remove(&retired)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let object = |uid: &str| {
            let mut o = existing.clone();
            o.uid = uid.to_owned();
            o.tags = [format!("tag-{uid}")].into();
            o.meta.names = vec![Name {
                value: format!("name-{uid}"),
                name_type: "UninterpretedTextString".into(),
            }];
            o
        };
        let jobs = vec![
            job(vec![object("pair-a"), object("pair-b")]),
            job(vec![object("pair-a")]),
            job(vec![object("given-back"), object(&held)]),
            job(vec![object(&retired)]),
            job(vec![object("single")]),
        ];
        let counts = Counts::default();
        let results = commit(&kms.store.pool, &jobs, &counts).await;
        assert!(
            matches!(
                results.as_slice(),
                [
                    Ok(()),
                    Err(StoreError::Exists),
                    Err(StoreError::Exists),
                    Err(StoreError::Retired(uid)),
                    Ok(()),
                ] if *uid == retired
            ),
            "{results:?}"
        );
        let (transactions, inserts) = Inserts::counted(&counts);
        assert_eq!((transactions, inserts), (1, 2));
        for uid in ["pair-a", "pair-b", "single"] {
            let stored = kms.store.load(uid).await.ok().flatten();
            let stored = stored.unwrap_or_else(|| panic!("{uid} not stored"));
            let expected = object(uid);
            assert_eq!(
                (
                    &stored.tags,
                    &stored.meta,
                    &stored.wrapped_key,
                    &stored.owner
                ),
                (
                    &expected.tags,
                    &expected.meta,
                    &expected.wrapped_key,
                    &expected.owner
                )
            );
            let filter = LocateFilter {
                name: Some(format!("name-{uid}")),
                ..LocateFilter::default()
            };
            let found = kms.store.locate("alice", &filter).await;
            let found: Vec<String> = found
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|l| l.uid)
                .collect();
            assert_eq!(found, [uid]);
        }
        assert!(kms.store.load("given-back").await.ok().flatten().is_none());
        kms.store
            .insert(&object("given-back"))
            .await
            .unwrap_or_else(|e| panic!("the uid was not given back: {e}"));
    }
}
