-- pgbench script, plain-SQL baseline, batch size :batch (pgbench -D batch=N): insert N messages,
-- read N, delete those read. Three statements, three transactions (autocommit).
-- Needs -M prepared (or extended): :ids is passed as a parameter, an array literal.
INSERT INTO bench_queue (message) SELECT bench_message(i) FROM generate_series(1, :batch::int) AS i RETURNING msg_id;
WITH c AS (
    SELECT msg_id FROM bench_queue
     WHERE vt <= clock_timestamp()
     ORDER BY msg_id
     LIMIT :batch::int
       FOR UPDATE SKIP LOCKED
), r AS (
    UPDATE bench_queue q
       SET vt = clock_timestamp() + interval '30 seconds', read_ct = q.read_ct + 1
      FROM c
     WHERE q.msg_id = c.msg_id
    RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message
)
SELECT coalesce(array_agg(msg_id), '{}') AS ids FROM r \gset
DELETE FROM bench_queue WHERE msg_id = ANY (:ids::bigint[]);
