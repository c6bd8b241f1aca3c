-- When the poller last asked Orchestrator about a job, so instances share the work.
alter table jobs add column last_polled_at timestamptz;
create index jobs_polling_idx on jobs (last_polled_at nulls first)
    where orchestrator_job_id is not null
      and state in ('pending', 'running', 'stopping', 'terminating', 'suspended', 'resumed');
