-- The W3C trace context a job was created in (when traces are exported), so its callback
-- carries the caller's trace on, however much later it is sent.
alter table jobs add column traceparent text check (traceparent is null or length(traceparent) <= 128);
