//! The ledger's group commit: the trigger path's writes (new jobs, deliveries with
//! their jobs, start marks) share one batcher and one commit.

use std::sync::Arc;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::*;
use crate::storage::batch::{Batcher, Late};

use super::batch_sql::{
    Claimed, ClaimedJob, HookJob, insert_claimed_many, insert_hooks_many, insert_many,
};
use super::marks::{Started, mark_started_many};

/// A write of the trigger path, to be group-committed.
#[derive(Debug, Clone)]
enum Write {
    Insert(NewJob),
    Claimed(Box<ClaimedJob>),
    Hook(Box<HookJob>),
    Started(Started),
    /// Writes nothing: answered once everything queued before it is committed.
    Barrier,
}

/// What a `Write` answers.
#[derive(Debug)]
enum Written {
    Job(JobRow),
    Claimed(Claimed),
    Hook(Option<JobRow>),
    Started(Option<JobRow>),
    Barrier,
}

/// Writes a batch: one statement per kind of write in it, all in one commit (a
/// transaction only when there are several kinds). Answers in the order given.
async fn write_batch(
    kept: &Kept,
    items: &[Write],
    owner: Uuid,
    lease_secs: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    // Barriers alone write nothing: everything queued before them is committed by now.
    if items.iter().all(|i| matches!(i, Write::Barrier)) {
        return Ok(items.iter().map(|_| Written::Barrier).collect());
    }
    let mut conn = kept.take().await?;
    match write_kinds(&mut conn, items, owner, lease_secs).await {
        Ok(written) => {
            kept.keep(conn);
            Ok(written)
        }
        // The link broke (a restart, a failover, a killed session): once more on a
        // checked connection. Each write is safe to repeat: a job or delivery already
        // stored is read back, and a start already marked is not marked again.
        Err(e) if broken_link(&e) => {
            tracing::info!(error = %e, "a ledger connection broke; writing the batch again on another");
            drop(conn);
            let mut conn = kept.pool.acquire().await?;
            let written = write_kinds(&mut conn, items, owner, lease_secs).await?;
            kept.keep(conn);
            Ok(written)
        }
        // The pool checks the connection it gets back; the batcher then writes the items
        // one by one, so a bad one fails alone.
        Err(e) => Err(e),
    }
}

/// The error says the connection, not the statement, failed.
fn broken_link(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        // 08: connection exception; 57P: the server is shutting down or restarting.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// A kept connection idle this long is checked with a round trip before its next batch.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Connections the ledger keeps between batches. sqlx checks a connection with a round
/// trip each time it is taken from its pool and each time it is given back, and the
/// ledger commits hundreds of batches a second. A kept connection idle for `IDLE_CHECK`
/// is checked before its next batch; one that breaks in use is replaced (`write_batch`).
struct Kept {
    pool: PgPool,
    most: usize,
    idle: std::sync::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
}

impl Kept {
    fn new(pool: PgPool, most: usize) -> Self {
        Self {
            pool,
            most,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn take(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some((mut conn, since)) => {
                if since.elapsed() < IDLE_CHECK || conn.ping().await.is_ok() {
                    return Ok(conn);
                }
                // Broken (a restart, a dropped link): the pool closes it.
                drop(conn);
                self.pool.acquire().await
            }
            None => self.pool.acquire().await,
        }
    }

    fn keep(&self, conn: PoolConnection<Postgres>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.most {
            idle.push((conn, Instant::now()));
        }
    }
}

/// One commit for the kinds of write in `items`: one statement per kind, in a
/// transaction only when there are several kinds.
async fn write_kinds(
    conn: &mut PgConnection,
    items: &[Write],
    owner: Uuid,
    lease_secs: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    let (mut inserts, mut claims, mut hooks, mut started) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for item in items {
        match item {
            Write::Insert(j) => inserts.push(j),
            Write::Claimed(c) => claims.push(c.as_ref()),
            Write::Hook(h) => hooks.push(h.as_ref()),
            Write::Started(s) => started.push(s),
            Write::Barrier => {}
        }
    }
    for (batch, n) in [
        ("job_insert", inserts.len()),
        ("job_insert_claimed", claims.len()),
        ("hook_insert", hooks.len()),
        ("job_started", started.len()),
    ] {
        if n > 0 {
            crate::metrics::batch_size(batch, n);
        }
    }
    // The marks ride on the first statement that stores new jobs (plain, claimed, or with
    // deliveries). Several such statements take a transaction: each defines `new`.
    let kinds = [!inserts.is_empty(), !claims.is_empty(), !hooks.is_empty()]
        .iter()
        .filter(|k| **k)
        .count();
    let mut tx: Option<Transaction<'_, Postgres>> = None;
    let conn: &mut PgConnection = if kinds > 1 {
        tx.insert(conn.begin().await?)
    } else {
        conn
    };
    // Which statement carries the marks: the first kind present (none: their own).
    let carrier = [!inserts.is_empty(), !claims.is_empty(), !hooks.is_empty()]
        .iter()
        .position(|k| *k);
    let marks_for = |kind: usize| {
        if carrier == Some(kind) {
            &started[..]
        } else {
            &[][..]
        }
    };
    let (mut inserted, mut claimed, mut hooked, mut marked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if !inserts.is_empty() {
        let (rows, m) = insert_many(&mut *conn, &inserts, marks_for(0), owner, lease_secs).await?;
        inserted = rows;
        marked.extend(m);
    }
    if !claims.is_empty() {
        let (rows, m) =
            insert_claimed_many(&mut *conn, &claims, marks_for(1), owner, lease_secs).await?;
        claimed = rows;
        marked.extend(m);
    }
    if !hooks.is_empty() {
        let (rows, m) =
            insert_hooks_many(&mut *conn, &hooks, marks_for(2), owner, lease_secs).await?;
        hooked = rows;
        marked.extend(m);
    }
    if carrier.is_none() && !started.is_empty() {
        marked = mark_started_many(&mut *conn, &started).await?;
    }
    let (mut inserted, mut claimed, mut hooked, mut marked) = (
        inserted.into_iter(),
        claimed.into_iter(),
        hooked.into_iter(),
        marked.into_iter(),
    );
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    items
        .iter()
        .map(|item| {
            Ok(match item {
                Write::Insert(_) => Written::Job(inserted.next().ok_or(sqlx::Error::RowNotFound)?),
                Write::Claimed(_) => {
                    Written::Claimed(claimed.next().ok_or(sqlx::Error::RowNotFound)?)
                }
                Write::Hook(_) => Written::Hook(hooked.next().ok_or(sqlx::Error::RowNotFound)?),
                Write::Started(_) => {
                    Written::Started(marked.next().ok_or(sqlx::Error::RowNotFound)?)
                }
                Write::Barrier => Written::Barrier,
            })
        })
        .collect()
}

/// The group-committed writes of the trigger path: new jobs (from `/run` and from
/// webhook deliveries) and jobs Orchestrator took. They share one batcher, so under load
/// one commit carries all three kinds.
#[derive(Clone)]
pub struct Ledger {
    writes: Batcher<Write, Written>,
}

/// Most writes in one batch.
const MAX_BATCH: usize = 512;

/// Batches being committed at once. Once a batch became one statement on a kept
/// connection, one in flight measured best: in five interleaved A/B pairs at 1,000
/// jobs/s, PostgreSQL spent 0.48-0.52 ms of CPU per job against 0.59-0.62 with two, and
/// `/run`'s p50 was 3.0-5.8 ms against 5.0-10.7, at about the same peak throughput.
/// (Before that, two had beaten four.)
/// `Ledger::settled` relies on it: with one batch in flight, a barrier is answered only
/// after every batch before it was committed (in session 16, two in flight measured worse
/// again: PostgreSQL 0.81-0.83 ms of CPU per job against 0.62).
pub const BATCHES_IN_FLIGHT: usize = 1;
const _: () = assert!(
    BATCHES_IN_FLIGHT == 1,
    "Ledger::settled answers a barrier once the batches before it are done: one in flight"
);

impl Ledger {
    /// Starts the batcher; new jobs are leased to `owner` for `lease_secs`.
    pub fn spawn(pool: PgPool, owner: Uuid, lease_secs: i64) -> Self {
        // Keep a connection per batch in flight, but never more than a quarter of the pool.
        let most = BATCHES_IN_FLIGHT.min(pool.options().get_max_connections() as usize / 4);
        let kept = Arc::new(Kept::new(pool, most));
        let writes = Batcher::spawn("ledger", MAX_BATCH, BATCHES_IN_FLIGHT, move |items| {
            let kept = kept.clone();
            async move { write_batch(&kept, &items, owner, lease_secs).await }
        });
        Self { writes }
    }

    /// Writes waiting for a group commit (both batches in flight are still committing).
    pub fn waiting(&self) -> usize {
        self.writes.waiting()
    }

    async fn write(&self, item: Write) -> Result<Written, sqlx::Error> {
        self.writes.submit(item).await
    }

    /// Records a webhook delivery and its queued job together (committed with whatever
    /// else is queued); None, with nothing stored, when the delivery's key was taken.
    pub async fn hook(&self, item: HookJob) -> Result<Option<JobRow>, sqlx::Error> {
        match self.write(Write::Hook(Box::new(item))).await? {
            Written::Hook(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }

    /// `hook` within `deadline` (see `Batcher::submit_within`).
    pub async fn hook_within(
        &self,
        item: HookJob,
        deadline: std::time::Duration,
    ) -> Result<Option<JobRow>, Late> {
        match self
            .writes
            .submit_within(Write::Hook(Box::new(item)), deadline)
            .await?
        {
            Written::Hook(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    /// `insert` within `deadline` (see `Batcher::submit_within`).
    pub async fn insert_within(
        &self,
        job: NewJob,
        deadline: std::time::Duration,
    ) -> Result<JobRow, Late> {
        match self
            .writes
            .submit_within(Write::Insert(job), deadline)
            .await?
        {
            Written::Job(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    /// Records a queued job that claims an `Idempotency-Key`, within `deadline` (see
    /// `Batcher::submit_within`): stored only if the key was free.
    pub async fn insert_claimed_within(
        &self,
        item: ClaimedJob,
        deadline: std::time::Duration,
    ) -> Result<Claimed, Late> {
        match self
            .writes
            .submit_within(Write::Claimed(Box::new(item)), deadline)
            .await?
        {
            Written::Claimed(c) => Ok(c),
            _ => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    /// Records a queued job (committed with whatever else is queued) and answers its row.
    pub async fn insert(&self, job: NewJob) -> Result<JobRow, sqlx::Error> {
        match self.write(Write::Insert(job)).await? {
            Written::Job(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }

    /// Records that Orchestrator has a job; answers the job as it now stands (None if it
    /// was no longer queued).
    pub async fn started(&self, s: Started) -> Result<Option<JobRow>, sqlx::Error> {
        self.started_now(s).await
    }

    /// `started`, queued for the next group commit before this returns (so a `settled`
    /// called after it waits for it); the future answers once it is committed.
    pub fn started_now(
        &self,
        s: Started,
    ) -> impl Future<Output = Result<Option<JobRow>, sqlx::Error>> + Send + 'static {
        let written = self.writes.submit_now(Write::Started(s));
        async move {
            match written.await? {
                Written::Started(row) => Ok(row),
                _ => Err(sqlx::Error::RowNotFound),
            }
        }
    }

    /// Answers once every write queued before this call is committed (or failed): an
    /// Orchestrator event for a job whose start mark is in flight finds it after this.
    pub async fn settled(&self) -> Result<(), sqlx::Error> {
        self.write(Write::Barrier).await.map(|_| ())
    }
}
