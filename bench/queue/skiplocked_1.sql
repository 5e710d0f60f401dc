-- pgbench script, plain-SQL baseline, batch size 1: send one message, read one, delete it.
-- Three statements, three transactions (autocommit). Needs -M prepared (or extended): :id is
-- passed as a parameter. LIMIT 1 is written in, as hand-written SQL for one message would have it
-- (a parameter would make Postgres plan the read anew on every call).
INSERT INTO bench_queue (message) VALUES (bench_message(1)) RETURNING msg_id;
WITH c AS (
    SELECT msg_id FROM bench_queue
     WHERE vt <= clock_timestamp()
     ORDER BY msg_id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), r AS (
    UPDATE bench_queue q
       SET vt = clock_timestamp() + interval '30 seconds', read_ct = q.read_ct + 1
      FROM c
     WHERE q.msg_id = c.msg_id
    RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message
)
SELECT msg_id AS id FROM r \gset
DELETE FROM bench_queue WHERE msg_id = :id::bigint;
