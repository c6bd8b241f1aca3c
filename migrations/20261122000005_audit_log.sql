-- The audit log (created empty by the first migration) gets the shape GET /audit lists:
-- every change made through the admin API or the config file, who made it, when, and the
-- object before and after (as the API shows it, so secrets are never in it).
ALTER TABLE audit_log RENAME COLUMN created_at TO at;
ALTER TABLE audit_log RENAME COLUMN object_id TO object_key;
UPDATE audit_log SET object_key = '' WHERE object_key IS NULL;
ALTER TABLE audit_log ALTER COLUMN object_key SET NOT NULL;
ALTER TABLE audit_log ADD COLUMN client_ip text;
ALTER INDEX audit_log_created_idx RENAME TO audit_log_at;
CREATE INDEX audit_log_object ON audit_log (object_type, object_key, id DESC);

