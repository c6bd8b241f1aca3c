-- The first schema: what PRODUCT.md describes. Later changes come as new migrations.
-- Secrets are stored as AES-256-GCM ciphertext (`bytea`) next to the id of the key
-- that sealed them; nothing secret is ever stored in plain text.

create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;

-- One Orchestrator tenant and the credentials to reach it.
create table connections (
    id                uuid primary key,
    name              text not null unique,
    kind              text not null check (kind in
                          ('client_credentials', 'refresh_token', 'pat', 'password', 'user_key')),
    flavour           text not null check (flavour in
                          ('cloud', 'automation_suite', 'standalone', 'legacy_cloud')),
    orchestrator_url  text not null,
    identity_url      text,
    organization      text,
    tenant            text,
    -- Non-secret, kind-specific settings (client id, scopes, tenancy name, user name, PAT expiry...).
    settings          jsonb not null default '{}'::jsonb,
    -- Secret fields (client secret, password, PAT, user key), sealed as one JSON document.
    secrets_sealed    bytea,
    secrets_key_id    text,
    health            text not null default 'unknown' check (health in ('unknown', 'healthy', 'unhealthy')),
    health_reason     text,
    health_checked_at timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
create trigger connections_updated_at before update on connections
    for each row execute function set_updated_at();

-- The current tokens of a connection. The row is locked (`for update`) while a
-- token is refreshed, so one refresh runs at a time across every instance.
create table connection_tokens (
    connection_id          uuid primary key references connections (id) on delete cascade,
    access_token_sealed    bytea,
    access_expires_at      timestamptz,
    refresh_token_sealed   bytea,
    id_token_sealed        bytea,
    key_id                 text,
    refresh_count          bigint not null default 0,
    last_refreshed_at      timestamptz,
    last_error             text,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now()
);
create trigger connection_tokens_updated_at before update on connection_tokens
    for each row execute function set_updated_at();

-- A named process: what `/run/{name}` starts.
create table processes (
    id                  uuid primary key,
    name                text not null unique check (name ~ '^[A-Za-z0-9_-]{1,100}$'),
    connection_id       uuid not null references connections (id) on delete restrict,
    folder_path         text,
    folder_id           bigint,
    folder_key          uuid,
    release_process_key text,
    release_name        text,
    release_version     text,
    -- Cached release lookup; cleared when StartJobs answers 404.
    release_key         uuid,
    release_arguments   jsonb,
    release_resolved_at timestamptz,
    default_input       jsonb not null default '{}'::jsonb,
    job_options         jsonb not null default '{}'::jsonb,
    max_wait_seconds    integer not null default 60 check (max_wait_seconds >= 0),
    callback_url        text,
    callback_secret_sealed bytea,
    callback_key_id     text,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    check (folder_path is not null or folder_id is not null or folder_key is not null),
    check (release_process_key is not null or release_name is not null)
);
create trigger processes_updated_at before update on processes
    for each row execute function set_updated_at();

-- API keys: only a hash of the key is kept.
create table api_keys (
    id           uuid primary key,
    name         text not null,
    prefix       text not null,
    key_hash     bytea not null unique,
    scopes       text[] not null,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
create trigger api_keys_updated_at before update on api_keys
    for each row execute function set_updated_at();

-- Inbound webhook definitions (`/hooks/{slug}`).
create table webhooks (
    id                uuid primary key,
    slug              text not null unique check (slug ~ '^[A-Za-z0-9_-]{1,100}$'),
    process_id        uuid not null references processes (id) on delete restrict,
    scheme            text not null,
    -- Scheme settings that are not secret (header names, algorithm, encoding...).
    scheme_config     jsonb not null default '{}'::jsonb,
    secrets_sealed    bytea,
    secrets_key_id    text,
    public            boolean not null default false,
    enabled           boolean not null default true,
    tolerance_seconds integer,
    dedup_source      text,
    filter            text,
    mapping           jsonb not null default '{}'::jsonb,
    response          jsonb not null default '{}'::jsonb,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    check (scheme <> 'none' or public)
);
create trigger webhooks_updated_at before update on webhooks
    for each row execute function set_updated_at();

-- The job ledger. A row is committed before the caller hears "accepted".
create table jobs (
    id                  uuid primary key,
    process_id          uuid references processes (id) on delete set null,
    process_name        text not null,
    source              text not null check (source in ('api', 'hook', 'replay')),
    source_detail       text,
    state               text not null,
    input               jsonb not null default '{}'::jsonb,
    reference           text not null unique,
    orchestrator_job_id  bigint,
    orchestrator_job_key uuid,
    output              jsonb,
    error               jsonb,
    info                text,
    attempts            integer not null default 0,
    next_attempt_at     timestamptz,
    lease_owner         uuid,
    lease_expires_at    timestamptz,
    last_error          text,
    callback_url        text,
    replay_of           uuid references jobs (id) on delete set null,
    started_at          timestamptz,
    finished_at         timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);
create trigger jobs_updated_at before update on jobs
    for each row execute function set_updated_at();
create index jobs_dispatch_idx on jobs (next_attempt_at) where state = 'queued';
create index jobs_tracking_idx on jobs (process_id, state)
    where state not in ('successful', 'faulted', 'stopped', 'rejected', 'dead');
create index jobs_listing_idx on jobs (created_at desc, id desc);
create index jobs_process_idx on jobs (process_name, created_at desc);
create index jobs_orchestrator_idx on jobs (orchestrator_job_id) where orchestrator_job_id is not null;

-- Every state change of a job, with where we learned it.
create table job_events (
    id          bigserial primary key,
    job_id      uuid not null references jobs (id) on delete cascade,
    state       text not null,
    source      text not null,
    detail      jsonb,
    occurred_at timestamptz not null default now(),
    created_at  timestamptz not null default now()
);
create index job_events_job_idx on job_events (job_id, id);

-- Signed callbacks sent when a job ends.
create table callback_deliveries (
    id              uuid primary key,
    job_id          uuid not null references jobs (id) on delete cascade,
    url             text not null,
    state           text not null check (state in ('pending', 'delivered', 'dead')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz,
    lease_expires_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create trigger callback_deliveries_updated_at before update on callback_deliveries
    for each row execute function set_updated_at();
create index callback_deliveries_due_idx on callback_deliveries (next_attempt_at) where state = 'pending';

-- Idempotency-Key records: the same key and body return the first job.
create table idempotency_keys (
    scope        text not null,
    key          text not null,
    request_hash bytea not null,
    job_id       uuid references jobs (id) on delete cascade,
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    primary key (scope, key)
);
create index idempotency_keys_expiry_idx on idempotency_keys (expires_at);

-- Every delivery to `/hooks/{slug}`, whatever became of it.
create table webhook_deliveries (
    id                  uuid primary key,
    webhook_id          uuid not null references webhooks (id) on delete cascade,
    delivery_key        text,
    verification        text not null,
    verification_detail text,
    dedup               text not null,
    filter_result       text,
    mapped_input        jsonb,
    job_id              uuid references jobs (id) on delete set null,
    error               text,
    received_at         timestamptz not null default now(),
    created_at          timestamptz not null default now()
);
create unique index webhook_deliveries_dedup_idx on webhook_deliveries (webhook_id, delivery_key)
    where delivery_key is not null and dedup = 'first';
create index webhook_deliveries_listing_idx on webhook_deliveries (webhook_id, received_at desc);

-- Who changed what, when; secrets masked.
create table audit_log (
    id          bigserial primary key,
    actor       text not null,
    action      text not null,
    object_type text not null,
    object_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text,
    created_at  timestamptz not null default now()
);
create index audit_log_created_idx on audit_log (created_at desc);
