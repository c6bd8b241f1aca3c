-- The output argument definitions of a process's release (typed /run answers), and
-- why its configuration could not be checked against Orchestrator when it was saved
-- (null once a check succeeded).
alter table processes
    add column release_outputs jsonb,
    add column unverified_reason text;
