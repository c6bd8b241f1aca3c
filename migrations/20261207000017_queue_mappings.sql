-- Queue mappings live beside processes, in one table of named targets: a row with a
-- `queue_name` is a queue mapping (`POST /queues/{name}` adds an item to that
-- Orchestrator queue), one without is a process (`POST /run/{name}` starts a job). They
-- share the folder, connection, defaults, wait limit, callbacks, API-key scopes and
-- webhook targets, and one name space.
alter table processes
    add column queue_name text check (queue_name is null or length(queue_name) between 1 and 512),
    -- The queue definition last looked up (id, unique references, schemas, retries).
    add column queue_definition jsonb;

-- A process names a release; a queue mapping names a queue instead.
do $$
declare c text;
begin
    select conname into c from pg_constraint
    where conrelid = 'processes'::regclass and contype = 'c'
      and pg_get_constraintdef(oid) like '%release_process_key IS NOT NULL%';
    execute format('alter table processes drop constraint %I', c);
end $$;
alter table processes add constraint processes_target_check
    check (queue_name is not null or release_process_key is not null or release_name is not null);

-- One ledger: a queue item is recorded, added and tracked as a job is, with its kind.
alter table jobs
    add column kind text not null default 'job' check (kind in ('job', 'queue_item'));
create index jobs_kind_created_idx on jobs (created_at desc) where kind = 'queue_item';
