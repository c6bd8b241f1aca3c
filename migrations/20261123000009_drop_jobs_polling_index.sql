-- no-transaction
-- Replaced by `jobs_poll_due_idx`; dropped without blocking writes to the job ledger.
drop index concurrently if exists jobs_polling_idx;
