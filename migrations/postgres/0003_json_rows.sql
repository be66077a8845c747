-- Batched statements read their rows from a JSON array bound as one
-- parameter. json_array_elements() is planned as 100 rows, which on a queue
-- or deliveries table of a few thousand rows (and the stale statistics such
-- tables always have) makes the planner hash-join against a sequential scan
-- instead of probing the primary key once per element: milliseconds per
-- batch, growing with the table. This function is planned as one row, so
-- batches get index probes. STRICT keeps it from being inlined (which would
-- drop the estimate); a NULL array yields no rows. Elements are jsonb: each
-- `value ->> 'key'` is then a lookup, not a re-parse of the element's text
-- (a third of the cost for the eight-key rows of an outcome batch).
CREATE FUNCTION payhook_json_rows(doc jsonb) RETURNS TABLE (value jsonb)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 1
    AS $$ SELECT jsonb_array_elements(doc) $$;
