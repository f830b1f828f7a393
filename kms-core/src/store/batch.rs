//! Group commit for new objects. Inserts that arrive while a transaction commits wait in a
//! queue; the next transaction takes all of them (up to [`MAX_BATCH`]) and commits once — one
//! fsync for many Creates instead of one each. Each insert runs in a savepoint of its own, so
//! one that fails (its identifier already taken) fails alone and the others commit. A caller is
//! answered only once the transaction holding its objects has committed: an answered Create is
//! durable, as before.
//!
//! There is no waiting for company: a lone insert is committed at once; batches form only
//! because commits take time while requests keep coming.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Acquire, AnyPool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Store, StoreError};
use crate::object::ManagedObject;

/// The most inserts one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Inserts waiting beyond the running transaction; a full queue makes callers wait (bounded
/// memory, back-pressure instead of an error).
const QUEUE: usize = 4096;

struct Job {
    objects: Vec<ManagedObject>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue into the one task that writes new objects.
#[derive(Debug)]
pub(super) struct Inserts {
    queue: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// Committed transactions and the inserts they held, since start (the average group size is
/// their ratio; exported as metrics by the core).
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub transactions: AtomicU64,
    pub inserts: AtomicU64,
}

impl Inserts {
    /// Starts the writing task on the current runtime. `writer` is the store's SQLite writer
    /// lock (taken for each transaction, as every other write does).
    pub(super) fn start(pool: AnyPool, writer: Arc<Mutex<()>>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(pool, writer, jobs, counts.clone()));
        Self { queue, counts }
    }

    /// (committed transactions, inserts in them) since start.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.counts.transactions.load(Ordering::Relaxed),
            self.counts.inserts.load(Ordering::Relaxed),
        )
    }

    /// Inserts `objects` together (all or none), returning once committed.
    pub(super) async fn insert(&self, objects: Vec<ManagedObject>) -> Result<(), StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { objects, answer })
            .await
            .map_err(|_| StoreError::Commit("the insert task has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Commit("the insert task stopped before answering".into()))?
    }
}

async fn run(
    pool: AnyPool,
    writer: Arc<Mutex<()>>,
    mut queue: mpsc::Receiver<Job>,
    counts: Arc<Counts>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let results = commit(&pool, &writer, &jobs).await;
        if results.iter().any(Result::is_ok) {
            counts.transactions.fetch_add(1, Ordering::Relaxed);
            let done = results.iter().filter(|r| r.is_ok()).count();
            counts.inserts.fetch_add(done as u64, Ordering::Relaxed);
        }
        for (job, result) in jobs.drain(..).zip(results) {
            // A caller that went away (its request cancelled) needs no answer; its object is
            // stored all the same, as it would have been without batching.
            let _ = job.answer.send(result);
        }
    }
}

/// One transaction for all `jobs`: each in a savepoint, then one commit. Returns each job's
/// outcome; when the commit itself fails, every job fails with its cause.
async fn commit(pool: &AnyPool, writer: &Mutex<()>, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
    let _turn = writer.lock().await;
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return failed(jobs.len(), &e),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(insert_one(&mut tx, &job.objects).await);
    }
    if let Err(e) = tx.commit().await {
        return failed(jobs.len(), &e);
    }
    results
}

fn failed(count: usize, cause: &sqlx::Error) -> Vec<Result<(), StoreError>> {
    (0..count)
        .map(|_| Err(StoreError::Commit(cause.to_string())))
        .collect()
}

/// One job's objects in a savepoint: kept if all insert, rolled back (alone) otherwise.
async fn insert_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    objects: &[ManagedObject],
) -> Result<(), StoreError> {
    let mut savepoint = tx.begin().await?;
    for object in objects {
        if let Err(e) = Store::create_in(&mut savepoint, object).await {
            savepoint.rollback().await?;
            return Err(e);
        }
    }
    savepoint.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::kmip::testing;
    use crate::store::StoreError;

    /// Inserts made at once share transactions; one whose identifier is taken fails alone and
    /// the others are all stored.
    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_a_duplicate_fails_alone() {
        let kms = Arc::new(testing::kms().await);
        let first = testing::create(&kms, "alice", vec![]).await;
        let existing = kms
            .store
            .load(&first)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{first} not stored"));
        let (transactions_before, _) = kms.store.insert_counts();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let mut object = existing.clone();
            object.uid = format!("grouped-{i}");
            let kms = kms.clone();
            tasks.spawn(async move { kms.store.insert(&object).await.map(|()| i) });
        }
        let duplicate = existing.clone();
        let store_kms = kms.clone();
        tasks.spawn(async move { store_kms.store.insert(&duplicate).await.map(|()| 99) });
        let mut stored = Vec::new();
        let mut refused = 0;
        while let Some(done) = tasks.join_next().await {
            match done.unwrap_or_else(|e| panic!("{e}")) {
                Ok(i) => stored.push(i),
                Err(StoreError::Exists) => refused += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        stored.sort_unstable();
        assert_eq!(stored, (0..40).collect::<Vec<_>>());
        assert_eq!(refused, 1);
        for i in 0..40 {
            let uid = format!("grouped-{i}");
            assert!(kms.store.load(&uid).await.ok().flatten().is_some(), "{uid}");
        }
        let (transactions, inserts) = kms.store.insert_counts();
        assert!(
            transactions - transactions_before < 40,
            "40 concurrent inserts took {} transactions",
            transactions - transactions_before
        );
        assert!(inserts >= 41, "{inserts}");
    }
}
