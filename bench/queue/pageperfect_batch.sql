-- pgbench script, pageperfect side, batch size :batch (pgbench -D batch=N): send_batch of N
-- messages, read N, delete those read with the array delete. Three statements, three transactions
-- (autocommit). Needs -M prepared (or extended): :ids is passed as a parameter, an array literal.
SELECT * FROM pageperfect.send_batch('bench', ARRAY(SELECT bench_message(i) FROM generate_series(1, :batch::int) AS i));
SELECT coalesce(array_agg(msg_id), '{}') AS ids FROM pageperfect.read('bench', 30, :batch::int) \gset
SELECT count(*) FROM pageperfect.delete('bench', :ids::bigint[]);
