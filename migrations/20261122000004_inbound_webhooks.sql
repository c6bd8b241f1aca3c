-- Inbound webhooks: each delivery keeps the request (for an admin replay) and what
-- became of it.
alter table webhook_deliveries
    add column outcome         text not null default 'accepted',
    add column request_headers jsonb,
    add column request_query   text,
    add column request_body    bytea,
    add column replay_of       uuid references webhook_deliveries (id) on delete set null;
alter table webhooks alter column mapping drop not null;
alter table webhooks alter column mapping drop default;
update webhooks set mapping = null where mapping = '{}'::jsonb;
