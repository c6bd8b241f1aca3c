-- no-transaction
-- Repeats of a signed body are found, and refused, by this index (as delivery keys are by
-- `webhook_deliveries_dedup_idx`). Built concurrently: the delivery log may be large.
create unique index concurrently if not exists webhook_deliveries_body_dedup_idx
    on webhook_deliveries (webhook_id, body_sha256)
    where body_sha256 is not null and dedup = 'first';
