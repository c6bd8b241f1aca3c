-- Process scopes move to their own namespace, `run:<process>` and `run:*`, so a process
-- named like a built-in scope (`admin`, `jobs:read`) can never grant it. Existing keys
-- keep what they could do: `admin` and `jobs:read` stay, `*` becomes `run:*`, and any
-- other scope (a process name) becomes `run:<name>`.
update api_keys
set scopes = array(
    select case
               when s in ('admin', 'jobs:read') or s like 'run:%' then s
               when s = '*' then 'run:*'
               else 'run:' || s
           end
    from unnest(scopes) with ordinality as t (s, n)
    order by n
)
where exists (
    select 1 from unnest(scopes) as s
    where s not in ('admin', 'jobs:read') and s not like 'run:%'
);
