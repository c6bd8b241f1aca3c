//! The group commit's insert statements: many jobs (alone, with their webhook
//! deliveries, or claiming Idempotency-Keys) in one statement each, bound as arrays.
//! Start marks ride along (`marks.rs`).

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::marks::{Started, bind_started, split_marked, with_marks};
use super::*;
use crate::storage::hooks::Delivery;

/// The common table expressions that insert new jobs from the arrays `$1`..`$7` and
/// `$10`..`$13` (bound by `bind_new_jobs`), leased to `$8` for `$9` seconds, with their
/// `queued` events. `keep` filters the unnested rows `t`. Defines `new`, the rows stored.
pub(super) fn insert_jobs_ctes(keep: &str) -> String {
    format!(
        "new as ( \
           insert into jobs (id, process_id, process_name, source, source_detail, state, input, reference, attempts, \
             lease_owner, lease_expires_at, callback_url, replay_of, kind, traceparent) \
           select t.id, t.process_id, t.process_name, t.source, t.source_detail, 'queued', t.input, t.reference, 1, \
             $8, now() + make_interval(secs => $9), t.callback_url, t.replay_of, \
             t.kind, t.traceparent \
           from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $10::text[], $11::uuid[], \
             $12::text[], $13::text[]) \
             as t(id, process_id, process_name, source, source_detail, input, reference, callback_url, replay_of, traceparent, kind) \
           {keep} \
           on conflict (id) do nothing \
           returning {COLUMNS}), \
         events as (insert into job_events (job_id, state, source) select id, 'queued', source from new)"
    )
}

/// Binds `$1`..`$13` of `insert_jobs_ctes`.
pub(super) fn bind_new_jobs<'q>(
    q: PgQuery<'q>,
    jobs: &[&'q NewJob],
    owner: Uuid,
    lease_secs: i64,
) -> PgQuery<'q> {
    q.bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.process_id).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.process_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.source).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.source_detail.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| &j.input).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.reference.clone().unwrap_or_else(|| reference(j.id)))
                .collect::<Vec<_>>(),
        )
        .bind(owner)
        .bind(lease_secs as f64)
        .bind(
            jobs.iter()
                .map(|j| j.callback_url.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.replay_of).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.traceparent.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.kind).collect::<Vec<_>>())
}

/// Answers, in the order of `ids`, the rows a batch stored; an id the batch did not store
/// is read back (a batch retried after a commit whose outcome was unknown), and is None
/// if it is not stored at all.
pub(super) async fn in_order(
    conn: &mut PgConnection,
    ids: impl Iterator<Item = Uuid>,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<Option<JobRow>>, sqlx::Error> {
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let row = JobRow::from_row(r)?;
        by_id.insert(row.id, row);
    }
    let mut out = Vec::with_capacity(rows.len());
    for id in ids {
        match by_id.remove(&id) {
            Some(row) => out.push(Some(row)),
            None => out.push(get(&mut *conn, id).await?),
        }
    }
    Ok(out)
}

/// Inserts many queued jobs in one statement (one commit), each leased to `owner` for its
/// first attempt, with their first events. Answers the rows in the order given. A job
/// already stored (a batch retried after a commit whose outcome was unknown) is read back
/// instead of inserted twice.
/// `marks` are recorded by the same statement (see `with_marks`).
pub(super) async fn insert_many(
    conn: &mut PgConnection,
    jobs: &[&NewJob],
    marks: &[&Started],
    owner: Uuid,
    lease_secs: i64,
) -> Result<(Vec<JobRow>, Vec<Option<JobRow>>), sqlx::Error> {
    let sql = with_marks(&insert_jobs_ctes(""), !marks.is_empty(), 14);
    let q = bind_new_jobs(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        jobs,
        owner,
        lease_secs,
    );
    let rows = bind_started(q, marks).fetch_all(&mut *conn).await?;
    let (rows, marked) = split_marked(rows, marks)?;
    let stored = in_order(conn, jobs.iter().map(|j| j.id), rows)
        .await?
        .into_iter()
        .map(|row| row.ok_or(sqlx::Error::RowNotFound))
        .collect::<Result<_, _>>()?;
    Ok((stored, marked))
}

/// A webhook delivery that starts a job: both are stored together or not at all.
#[derive(Debug, Clone)]
pub struct HookJob {
    pub job: NewJob,
    /// Recorded with `job_id` set to the job's id.
    pub delivery: Delivery,
}

/// Stores many deliveries and their jobs in one statement (one commit). A delivery whose
/// dedup key was already taken is not stored, and neither is its job: it answers None.
/// Answers in the order given; a pair already stored (a retried batch) is read back.
/// `marks` are recorded by the same statement (see `with_marks`).
pub(super) async fn insert_hooks_many(
    conn: &mut PgConnection,
    items: &[&HookJob],
    marks: &[&Started],
    owner: Uuid,
    lease_secs: i64,
) -> Result<(Vec<Option<JobRow>>, Vec<Option<JobRow>>), sqlx::Error> {
    // `on conflict do nothing` without a target: the dedup index (a key taken) and the
    // primary key (this very delivery, stored by a batch whose commit went unanswered).
    let ctes = format!(
        "d as ( \
           insert into webhook_deliveries (id, webhook_id, delivery_key, verification, verification_detail, dedup, \
             filter_result, mapped_input, job_id, error, outcome, request_headers, request_query, request_body, replay_of, body_sha256) \
           select * from unnest($14::uuid[], $15::uuid[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], \
             $21::jsonb[], $22::uuid[], $23::text[], $24::text[], $25::jsonb[], $26::text[], $27::bytea[], $28::uuid[], $29::bytea[]) \
           on conflict do nothing \
           returning job_id), \
         {}",
        insert_jobs_ctes("where t.id in (select job_id from d)")
    );
    let sql = with_marks(&ctes, !marks.is_empty(), 30);
    let jobs: Vec<&NewJob> = items.iter().map(|i| &i.job).collect();
    let d: Vec<&Delivery> = items.iter().map(|i| &i.delivery).collect();
    let q = bind_new_jobs(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        &jobs,
        owner,
        lease_secs,
    )
    .bind(d.iter().map(|d| d.id).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.webhook_id).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.delivery_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.verification.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.verification_detail.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(d.iter().map(|d| d.dedup.as_str()).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.filter_result.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.mapped_input.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind(items.iter().map(|i| i.job.id).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.error.as_deref()).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.outcome.as_str()).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.request_headers.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.request_query.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.request_body.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(d.iter().map(|d| d.replay_of).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.body_sha256.as_deref())
            .collect::<Vec<_>>(),
    );
    let rows = bind_started(q, marks).fetch_all(&mut *conn).await?;
    let (rows, marked) = split_marked(rows, marks)?;
    let stored = in_order(conn, items.iter().map(|i| i.job.id), rows).await?;
    Ok((stored, marked))
}

/// An `Idempotency-Key` claimed by a new job: the job is stored only if the key is free.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Whose keys these are (the API key's id).
    pub scope: String,
    pub key: String,
    /// SHA-256 of the request, to tell a retry from another request with the same key.
    pub request_hash: Vec<u8>,
}

/// A new job that claims an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: NewJob,
    pub claim: IdempotencyClaim,
}

/// What a claimed insert found.
#[derive(Debug)]
pub enum Claimed {
    /// The key was free: this job is stored.
    New(Box<JobRow>),
    /// The key names an earlier job (None if that job is gone), read in the same
    /// transaction; whether that request was the same as this one.
    Taken {
        job: Option<Box<JobRow>>,
        same_request: bool,
    },
}

/// Stores many jobs that claim Idempotency-Keys, in one statement: each job only if its
/// key was free (a key already taken stores nothing and answers the job it names).
/// `marks` are recorded by the same statement (see `with_marks`).
pub(super) async fn insert_claimed_many(
    conn: &mut PgConnection,
    items: &[&ClaimedJob],
    marks: &[&Started],
    owner: Uuid,
    lease_secs: i64,
) -> Result<(Vec<Claimed>, Vec<Option<JobRow>>), sqlx::Error> {
    let ctes = format!(
        "k as ( \
           insert into idempotency_keys (scope, key, request_hash, job_id, expires_at) \
           select c.s, c.k, c.h, c.j, now() + interval '24 hours' \
           from unnest($14::text[], $15::text[], $16::bytea[], $1::uuid[]) as c(s, k, h, j) \
           on conflict (scope, key) do nothing \
           returning job_id), \
         {}",
        insert_jobs_ctes("where t.id in (select job_id from k)")
    );
    let sql = with_marks(&ctes, !marks.is_empty(), 17);
    let jobs: Vec<&NewJob> = items.iter().map(|i| &i.job).collect();
    let q = bind_new_jobs(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        &jobs,
        owner,
        lease_secs,
    )
    .bind(
        items
            .iter()
            .map(|i| i.claim.scope.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        items
            .iter()
            .map(|i| i.claim.key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        items
            .iter()
            .map(|i| i.claim.request_hash.as_slice())
            .collect::<Vec<_>>(),
    );
    let rows = bind_started(q, marks).fetch_all(&mut *conn).await?;
    let (rows, marked) = split_marked(rows, marks)?;
    let stored = in_order(conn, items.iter().map(|i| i.job.id), rows).await?;
    let mut out = Vec::with_capacity(items.len());
    for (item, row) in items.iter().zip(stored) {
        out.push(match row {
            Some(row) => Claimed::New(Box::new(row)),
            None => {
                let taken = sqlx::query("select job_id, request_hash from idempotency_keys where scope = $1 and key = $2")
        .bind(&item.claim.scope)
        .bind(&item.claim.key)
                .fetch_one(&mut *conn)
                .await?;
                let stored_hash: Vec<u8> = taken.try_get("request_hash")?;
                let job = match taken.try_get::<Option<Uuid>, _>("job_id")? {
                    Some(id) => super::get(&mut *conn, id).await?.map(Box::new),
                    None => None,
                };
                Claimed::Taken {
                    job,
                    same_request: stored_hash == item.claim.request_hash,
                }
            }
        });
    }
    Ok((out, marked))
}
