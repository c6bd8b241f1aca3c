-- One row per Orchestrator tenant: the traffic governor's shared state (every instance
-- reads and writes it). It grows out of the poller's list budget.
alter table poll_budget rename to orchestrator_tenants;
alter table orchestrator_tenants rename column blocked_until to lists_paused_until;
alter table orchestrator_tenants
    add column starts_paused_until    timestamptz,
    add column calls_paused_until     timestamptz,
    add column pause_reason           text,
    -- Learned from a 429 below the configured budget; null means the configured one.
    add column list_budget            integer check (list_budget > 0),
    add column list_budget_learned_at timestamptz,
    -- Set while the circuit is open (and while its one probe call is out).
    add column circuit_open_until     timestamptz,
    add column circuit_opens          integer not null default 0,
    add column circuit_reason         text,
    -- Reconciliation is waiting for a list: routine polling leaves it a share.
    add column urgent_until           timestamptz,
    add column created_at             timestamptz not null default now();
alter table poll_calls rename to tenant_list_calls;
alter index poll_calls_idx rename to tenant_list_calls_idx;

-- Failures of the job itself (not of its tenant): what max_attempts counts.
alter table jobs add column strikes integer not null default 0;
-- Jobs whose start may have reached Orchestrator wait here for a lookup by Reference.
create index jobs_unknown_idx on jobs (next_attempt_at) where state = 'unknown';
