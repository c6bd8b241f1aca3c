-- Every instance keeps short-lived copies of API keys, processes, connections and
-- webhook definitions (src/lookups.rs). Any change to them, however it is made,
-- tells every instance to drop its copies.
create function notify_config_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('ugw_config_changed', tg_table_name);
    return null;
end
$$;

create trigger processes_changed after insert or update or delete or truncate on processes
    for each statement execute function notify_config_changed();
create trigger webhooks_changed after insert or update or delete or truncate on webhooks
    for each statement execute function notify_config_changed();
-- Not on health checks, which update only health columns.
create trigger connections_changed after insert or delete or truncate on connections
    for each statement execute function notify_config_changed();
create trigger connections_updated after update of name, kind, flavour, orchestrator_url, identity_url,
    organization, tenant, settings, secrets_sealed, secrets_key_id on connections
    for each statement execute function notify_config_changed();
-- Not on `last_used_at`, noted at most once a minute per key.
create trigger api_keys_changed after insert or delete or truncate on api_keys
    for each statement execute function notify_config_changed();
create trigger api_keys_updated after update of name, key_hash, scopes, expires_at, revoked_at on api_keys
    for each statement execute function notify_config_changed();
