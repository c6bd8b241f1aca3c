-- no-transaction
-- The poller claims, per process, the unfinished jobs whose last news is older than
-- their cadence, oldest first. The old index only said which jobs were in flight, so each
-- one-second pass read every in-flight job and sorted them (35 ms with 40,000 of them,
-- on every instance, even when none was due). This one is ordered by the last news within
-- a process: a pass reads only the jobs it takes, and one index entry per process when
-- none is due.
-- Built concurrently (so outside a transaction, and one statement per file): the job
-- ledger may be large, and other instances keep taking jobs during the upgrade.
create index concurrently if not exists jobs_poll_due_idx on jobs
    (process_id, (coalesce(greatest(last_polled_at, state_changed_at), created_at)))
    where orchestrator_job_id is not null
      and state in ('pending', 'running', 'stopping', 'terminating', 'suspended', 'resumed');
