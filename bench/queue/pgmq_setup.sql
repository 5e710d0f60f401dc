-- Set-up of the queue benchmark's pgmq side (scripts/bench.sh), run with psql -v backlog=N in a
-- database of its own where pgmq's own SQL is installed (bench-pgmq-install): its queue "bench"
-- with the same messages and backlog as the other two sides.
\ir message.sql
SELECT pgmq.create('bench');
SELECT count(*) AS pgmq_backlog
  FROM pgmq.send_batch('bench', ARRAY(SELECT bench_message(i) FROM generate_series(1, :backlog) AS i));
