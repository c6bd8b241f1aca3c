-- Job tracking: the per-tenant budget of filtered job lists, webhook health,
-- and callback delivery records.

-- When a job's state last changed (the poller's clock; `updated_at` moves on every poll).
alter table jobs add column state_changed_at timestamptz;
update jobs set state_changed_at = updated_at;

-- Filtered `GET /odata/Jobs` calls made per tenant: a sliding 60-second log shared by
-- every instance. The `poll_budget` row is locked while a call is counted.
create table poll_budget (
    tenant_key    text primary key,
    blocked_until timestamptz,
    updated_at    timestamptz not null default now()
);
create table poll_calls (
    tenant_key text not null references poll_budget (tenant_key) on delete cascade,
    at         timestamptz not null default now()
);
create index poll_calls_idx on poll_calls (tenant_key, at);

-- Orchestrator webhooks per connection: when one last arrived (healthy webhooks mean
-- rare polling) and the webhook the gateway registered when GATEWAY_PUBLIC_URL is set.
create table connection_webhooks (
    connection_id uuid primary key references connections (id) on delete cascade,
    last_event_at timestamptz,
    webhook_key   text,
    checked_at    timestamptz,
    error         text
);

-- Callbacks: the message (built once, so every retry sends the same bytes and id)
-- and each attempt.
alter table callback_deliveries
    add column message_id text,
    add column payload    jsonb;
create index callback_deliveries_job_idx on callback_deliveries (job_id);
create index callback_deliveries_dead_idx on callback_deliveries (updated_at desc) where state = 'dead';

create table callback_attempts (
    id          bigserial primary key,
    delivery_id uuid not null references callback_deliveries (id) on delete cascade,
    attempt     integer not null,
    status      integer,
    error       text,
    duration_ms integer not null,
    at          timestamptz not null default now()
);
create index callback_attempts_delivery_idx on callback_attempts (delivery_id, id);
create index jobs_dead_idx on jobs (updated_at desc) where state = 'dead';
