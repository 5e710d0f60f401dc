-- pgbench script, pgmq side (pgmq's own SQL), batch size :batch: as pageperfect_batch.sql.
SELECT * FROM pgmq.send_batch('bench', ARRAY(SELECT bench_message(i) FROM generate_series(1, :batch::int) AS i));
SELECT coalesce(array_agg(msg_id), '{}') AS ids FROM pgmq.read('bench', 30, :batch::int) \gset
SELECT count(*) FROM pgmq.delete('bench', :ids::bigint[]);
