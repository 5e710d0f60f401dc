-- The message every send puts on each queue of the benchmark (setup.sql, pgmq_setup.sql): the
-- same function on every side, so all store and carry the same bytes. A one-expression SQL
-- function, inlined by the planner.
CREATE FUNCTION bench_message(n int) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('page_id', n, 'url', 'https://example.com/articles/' || n,
                              'stage', 'segment_embed', 'note', repeat('x', 64))
$$;
