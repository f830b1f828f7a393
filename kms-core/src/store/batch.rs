//! Group commit for new objects. Inserts that arrive while a transaction commits wait in a
//! queue; the next transaction takes all of them (up to [`MAX_BATCH`]) and commits once — one
//! fsync for many Creates instead of one each. A caller is answered only once the transaction
//! holding its objects has committed: an answered Create is durable, as before.
//!
//! How one group is written, and how one insert of it fails alone, is in `group`.
//!
//! There is no waiting for company: a lone insert is committed at once; groups form only
//! because commits take time while requests keep coming. Both backends use it: SQLite because it
//! has one writer, PostgreSQL because each round trip costs both processes CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;
use super::group::commit;
use crate::object::ManagedObject;

/// The most inserts one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Inserts waiting beyond the running transaction; a full queue makes callers wait (bounded
/// memory, back-pressure instead of an error).
const QUEUE: usize = 4096;

/// One caller's objects (inserted together or not at all) and where its outcome goes.
pub(super) struct Job {
    pub objects: Vec<ManagedObject>,
    pub answer: oneshot::Sender<Result<(), StoreError>>,
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

impl Counts {
    pub(super) fn committed(&self, inserts: usize) {
        if inserts > 0 {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            self.inserts.fetch_add(inserts as u64, Ordering::Relaxed);
        }
    }
}

impl Inserts {
    /// Starts the writing task on the current runtime. `writer` is the store's SQLite writer
    /// lock (taken for each transaction, as every other write does); PostgreSQL has none.
    pub(super) fn start(pool: AnyPool, writer: Option<Arc<Mutex<()>>>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(pool, writer, jobs, counts.clone()));
        Self { queue, counts }
    }

    /// (committed transactions, inserts in them) since start.
    pub(super) fn counts(&self) -> (u64, u64) {
        Self::counted(&self.counts)
    }

    pub(super) fn counted(counts: &Counts) -> (u64, u64) {
        (
            counts.transactions.load(Ordering::Relaxed),
            counts.inserts.load(Ordering::Relaxed),
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
    writer: Option<Arc<Mutex<()>>>,
    mut queue: mpsc::Receiver<Job>,
    counts: Arc<Counts>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let _turn = match &writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let results = commit(&pool, &jobs, &counts).await;
        for (job, result) in jobs.drain(..).zip(results) {
            // A caller that went away (its request cancelled) needs no answer; its object is
            // stored all the same, as it would have been without batching.
            let _ = job.answer.send(result);
        }
    }
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
