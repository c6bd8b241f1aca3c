//! Group commit: many requests' writes in one statement, each request still answered only
//! once its write is committed.
//!
//! A batcher takes what has queued up while earlier batches were being committed (up to
//! `max_batch`), and runs at most `concurrency` batches at once. Under light load a batch
//! is one item and costs what a plain write costs; under heavy load one commit (one WAL
//! flush) carries hundreds of jobs. If a batch fails, each of its items is tried again on
//! its own, so one bad item (a value PostgreSQL refuses) fails only its own request, and a
//! database outage gives every caller its own error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, sqlx::Error>>;
type Answer<R> = oneshot::Receiver<Result<R, sqlx::Error>>;

/// Where an item stands: waiting for a batch, in a statement being written, or given up
/// by its caller before it was written (it never will be).
const WAITING: u8 = 0;
const WRITING: u8 = 1;
const ABANDONED: u8 = 2;

/// An item, who to answer, and where it stands.
struct Entry<T, R> {
    item: T,
    reply: Reply<R>,
    stage: Arc<AtomicU8>,
    queued_at: Instant,
}

impl<T, R> Entry<T, R> {
    /// Claims the entry for a statement; false when its caller gave it up.
    fn claim(&self) -> bool {
        self.stage
            .compare_exchange(WAITING, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.stage.load(Ordering::Acquire) == WRITING
    }

    /// The statement failed (nothing of it was committed): the entry waits again.
    fn release(&self) {
        let _ = self
            .stage
            .compare_exchange(WRITING, WAITING, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Why a write with a deadline was not answered with its result.
#[derive(Debug, thiserror::Error)]
pub enum Late {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The deadline passed before the write was sent: it never will be.
    #[error("the database did not take the write within {0:?}; it was dropped")]
    NotWritten(Duration),
    /// The deadline passed while the write was in a statement: it may have been committed.
    #[error("the database did not confirm the write within {0:?}; it may have been committed")]
    Uncertain(Duration),
}

/// Errors that say the database cannot be reached (not that one item was bad): every
/// item of a failed batch gets the error at once instead of being tried one by one.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57")),
        _ => false,
    }
}

/// Submits items to be written in batches by `write`.
pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<Entry<T, R>>,
    /// Items submitted and not yet in a batch.
    waiting: Arc<AtomicUsize>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

impl<T, R> Batcher<T, R>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
{
    /// Starts the batching task. `write` gets a batch and answers one result per item, in
    /// order; it runs until every `Batcher` handle is dropped.
    pub fn spawn<F, Fut>(name: &'static str, max_batch: usize, concurrency: usize, write: F) -> Self
    where
        F: Fn(Arc<Vec<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry<T, R>>();
        let write = Arc::new(write);
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let waiting = Arc::new(AtomicUsize::new(0));
        let taken = waiting.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Wait for a free slot first: what queues up meanwhile joins this batch.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                taken.fetch_sub(batch.len(), Ordering::Relaxed);
                // Items whose callers gave up before now are not written at all.
                batch.retain(|e| e.claim());
                if batch.is_empty() {
                    drop(slot);
                    continue;
                }
                crate::metrics::batch_size(name, batch.len());
                let began = Instant::now();
                for e in &batch {
                    crate::metrics::batch_queued(name, began.duration_since(e.queued_at));
                }
                let write = write.clone();
                tokio::spawn(async move {
                    let n = batch.len();
                    let one = |r: Result<Vec<R>, sqlx::Error>| {
                        r.and_then(|mut rows| rows.pop().ok_or(sqlx::Error::RowNotFound))
                    };
                    let items = Arc::new(batch.iter().map(|e| e.item.clone()).collect::<Vec<T>>());
                    let timed = |items| async {
                        let written = write(items).await;
                        crate::metrics::batch_written(name, began.elapsed());
                        written
                    };
                    let mut results: Vec<Option<Result<R, sqlx::Error>>> = if n == 1 {
                        vec![Some(one(timed(items).await))]
                    } else {
                        match timed(items.clone()).await {
                            Ok(rows) if rows.len() == n => {
                                rows.into_iter().map(|r| Some(Ok(r))).collect()
                            }
                            Err(e) if unreachable(&e) => {
                                tracing::info!(error = %e, batch = name, size = n, "a batch failed: the database is unreachable");
                                batch.iter().map(|_| Some(Err(clone_error(&e)))).collect()
                            }
                            outcome => {
                                if let Err(e) = &outcome {
                                    tracing::info!(error = %e, batch = name, size = n, "a batch failed; writing its items one by one");
                                }
                                // Nothing of the batch was committed: each item may still be
                                // given up by its caller before its own statement.
                                batch.iter().for_each(Entry::release);
                                let mut results = Vec::with_capacity(n);
                                for entry in &batch {
                                    if !entry.claim() {
                                        results.push(None);
                                        continue;
                                    }
                                    results
                                        .push(Some(one(
                                            write(Arc::new(vec![entry.item.clone()])).await
                                        )));
                                }
                                results
                            }
                        }
                    };
                    for (entry, result) in batch.into_iter().zip(results.iter_mut()) {
                        // The caller may have gone (its client hung up); the write stands.
                        if let Some(result) = result.take() {
                            if result.is_err() {
                                entry.release();
                            }
                            let _ = entry.reply.send(result);
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { tx, waiting }
    }

    /// How many items are waiting for a batch (all batch slots are busy).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Writes `item` with whatever else is queued, and answers once it is committed.
    pub async fn submit(&self, item: T) -> Result<R, sqlx::Error> {
        let (answer, _) = self.enqueue(item)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// Queues `item` now (before this returns) and answers, once it is committed, through
    /// the future: what is queued before a later `submit` is committed no later than it.
    pub fn submit_now(
        &self,
        item: T,
    ) -> impl Future<Output = Result<R, sqlx::Error>> + Send + 'static {
        let queued = self.enqueue(item);
        async move {
            let (answer, _) = queued?;
            answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
        }
    }

    /// Like `submit`, but answers within `deadline`: a write not yet sent by then is
    /// dropped (`NotWritten`: nothing is recorded), one in a statement is waited for a
    /// little longer and then reported `Uncertain`.
    pub async fn submit_within(&self, item: T, deadline: Duration) -> Result<R, Late> {
        let (mut answer, stage) = self.enqueue(item)?;
        if let Ok(result) = tokio::time::timeout(deadline, &mut answer).await {
            return Ok(result.map_err(|_| sqlx::Error::WorkerCrashed)??);
        }
        if stage
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(Late::NotWritten(deadline));
        }
        // In a statement now: its outcome usually comes at once (a refused connection, a
        // commit); a link that went silent is not waited on for long.
        let grace = deadline.min(Duration::from_secs(2));
        match tokio::time::timeout(grace, &mut answer).await {
            Ok(result) => Ok(result.map_err(|_| sqlx::Error::WorkerCrashed)??),
            Err(_) => Err(Late::Uncertain(deadline + grace)),
        }
    }

    fn enqueue(&self, item: T) -> Result<(Answer<R>, Arc<AtomicU8>), sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let stage = Arc::new(AtomicU8::new(WAITING));
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            item,
            reply,
            stage: stage.clone(),
            queued_at: Instant::now(),
        };
        if self.tx.send(entry).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(sqlx::Error::PoolClosed);
        }
        Ok((answer, stage))
    }
}

/// The same error again, for each item of a batch that failed as a whole.
fn clone_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        other => sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            other.to_string(),
        )),
    }
}
