-- Batched statements read their rows from a JSON array bound as one
-- parameter. json_array_elements() is planned as 100 rows, which on a queue
-- or deliveries table of a few thousand rows (and the stale statistics such
-- tables always have) makes the planner hash-join against a sequential scan
-- instead of probing the primary key once per element: milliseconds per
-- batch, growing with the table. The same function, declared as one row,
-- gets index probes. STRICT keeps it from being inlined (which would drop
-- the estimate); a NULL array yields no rows, as json_array_elements does.
CREATE FUNCTION payhook_json_rows(doc json) RETURNS TABLE (value json)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 1
    AS $$ SELECT json_array_elements(doc) $$;
