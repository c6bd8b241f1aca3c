-- A webhook's own body limit (null: the `hooks.max_body_bytes` setting), and the
-- SHA-256 of a delivery's signed body for schemes whose signature has no timestamp
-- (GitHub, Shopify, UiPath, `hmac` without a timestamp header): a captured delivery sent
-- again with a new delivery id is still a repeat. Refused deliveries are purged by age.
alter table webhooks add column max_body_bytes integer;
alter table webhook_deliveries add column body_sha256 bytea;
