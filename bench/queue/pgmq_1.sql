-- pgbench script, pgmq side (pgmq's own SQL), batch size 1: as pageperfect_1.sql.
SELECT pgmq.send('bench', bench_message(1));
SELECT msg_id AS id FROM pgmq.read('bench', 30, 1) \gset
SELECT pgmq.delete('bench', :id::bigint);
