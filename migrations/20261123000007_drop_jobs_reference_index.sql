-- A job's Reference is `ugw-` followed by its id, so the primary key already makes it
-- unique. Its own unique index was a fourth index written on every insert and every
-- state change of a job (the hottest writes there are); filtering `GET /jobs` by
-- reference now looks the id up instead.
alter table jobs drop constraint jobs_reference_key;
