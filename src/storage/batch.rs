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
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, sqlx::Error>>;

/// Submits items to be written in batches by `write`.
pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
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
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, Reply<R>)>();
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
                crate::metrics::batch_size(name, batch.len());
                let write = write.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch.into_iter().unzip();
                    let n = items.len();
                    let one = |r: Result<Vec<R>, sqlx::Error>| {
                        r.and_then(|mut rows| rows.pop().ok_or(sqlx::Error::RowNotFound))
                    };
                    let items = Arc::new(items);
                    let results = if n == 1 {
                        vec![one(write(items).await)]
                    } else {
                        match write(items.clone()).await {
                            Ok(rows) if rows.len() == n => rows.into_iter().map(Ok).collect(),
                            outcome => {
                                if let Err(e) = &outcome {
                                    tracing::info!(error = %e, batch = name, size = n, "a batch failed; writing its items one by one");
                                }
                                let mut results = Vec::with_capacity(n);
                                for item in items.iter() {
                                    results.push(one(write(Arc::new(vec![item.clone()])).await));
                                }
                                results
                            }
                        }
                    };
                    for (reply, result) in replies.into_iter().zip(results) {
                        // The caller may have gone (its client hung up); the write stands.
                        let _ = reply.send(result);
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
        let (reply, answer) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send((item, reply)).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(sqlx::Error::PoolClosed);
        }
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}
