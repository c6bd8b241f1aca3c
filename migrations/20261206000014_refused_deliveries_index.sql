-- no-transaction
-- Refused deliveries are deleted once older than `hooks.refused_retention_secs`; this
-- index finds them without reading the rest of the delivery log.
create index concurrently if not exists webhook_deliveries_refused_idx
    on webhook_deliveries (received_at)
    where outcome = 'refused';
