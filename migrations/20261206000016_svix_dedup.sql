-- Standard Webhooks deliveries may come from Svix, with `svix-id` in place of
-- `webhook-id`: the default dedup key of those hooks reads either.
update webhooks
   set dedup_source = 'headers."webhook-id" || headers."svix-id"'
 where scheme = 'standard_webhooks' and dedup_source = 'headers."webhook-id"';
