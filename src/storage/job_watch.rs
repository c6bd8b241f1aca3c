//! Waiting for jobs to end. Every instance LISTENs on the channel the ledger NOTIFYs
//! when a job ends, so a waiter here wakes up when another instance (a webhook or a
//! poll there) records the end. A lost database connection is re-established, and
//! every waiter re-reads its job then, since notifications sent meanwhile are lost.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::storage::jobs::{self, ENDED_CHANNEL, JobRow};
use crate::storage::lookups::Lookups;

/// Tells waiters which jobs ended. `Uuid::nil()` means "anything may have ended".
#[derive(Clone)]
pub struct JobWatch {
    tx: broadcast::Sender<Uuid>,
}

impl Default for JobWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl JobWatch {
    /// A watch with no listener yet (see `listen`).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    /// Listens on the database until cancelled, reconnecting when the connection drops.
    /// Also drops `lookups`' copies when the configuration changes (or notifications may
    /// have been lost).
    pub async fn listen(self, pool: PgPool, stop: CancellationToken, lookups: Arc<Lookups>) {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for ended jobs; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if let Err(e) = listener
                .listen_all([ENDED_CHANNEL, crate::storage::lookups::CHANGED_CHANNEL])
                .await
            {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            // Anything may have ended or changed while nobody listened.
            lookups.clear();
            let _ = self.tx.send(Uuid::nil());
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    msg = listener.try_recv() => match msg {
                        Ok(Some(n)) if n.channel() == crate::storage::lookups::CHANGED_CHANNEL => {
                            lookups.clear();
                        }
                        Ok(Some(n)) => {
                            if let Ok(id) = Uuid::parse_str(n.payload()) {
                                let _ = self.tx.send(id);
                            }
                        }
                        // The connection was lost; try_recv reconnects on the next call.
                        Ok(None) => {
                            lookups.clear();
                            let _ = self.tx.send(Uuid::nil());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for ended jobs failed; reconnecting");
                            lookups.clear();
                            let _ = self.tx.send(Uuid::nil());
                            break;
                        }
                    }
                }
            }
        }
    }

    /// How many requests are waiting for a job to end on this instance now.
    pub fn waiting(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Waits up to `timeout` for the job to end. Returns the job as it then stands
    /// (None if it does not exist).
    pub async fn wait(
        &self,
        pool: &PgPool,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        // Subscribe before reading, so an end recorded in between is not missed.
        let mut rx = self.tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = jobs::get(pool, id).await?;
            match &job {
                Some(j) if !j.state.is_terminal() => {}
                _ => return Ok(job),
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return Ok(job),
                    msg = rx.recv() => match msg {
                        Ok(ended) if ended == id || ended.is_nil() => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return Ok(job),
                    }
                }
            }
        }
    }

    /// `job` once it has ended, waiting up to `wait` for that; the job as it then stands.
    /// The job is committed, so a database failure while waiting ends the wait (with the
    /// job as last read) rather than failing a request whose job exists.
    pub async fn until_end(&self, pool: &PgPool, job: JobRow, wait: Duration) -> JobRow {
        if job.state.is_terminal() || wait.is_zero() {
            return job;
        }
        self.wait(pool, job.id, wait)
            .await
            .ok()
            .flatten()
            .unwrap_or(job)
    }
}
