-- Set-up of the queue benchmark (scripts/bench.sh), run with psql -v backlog=N in a database where
-- CREATE EXTENSION pageperfect has been run.
--
-- Two queues with the same messages: pageperfect's queue "bench", used only through the public
-- pageperfect.* API functions, and the baseline bench_queue, a plain table used with plain SQL
-- (INSERT ... RETURNING, a FOR UPDATE SKIP LOCKED read, DELETE by id).

\ir message.sql

SELECT pageperfect.create_queue('bench');

-- The baseline. Its dequeue index is the primary key: the read walks msg_id in order and skips
-- messages whose vt is in the future, the way pageperfect's read walks its
-- (queue_name, priority DESC, msg_id) index. vt is deliberately not indexed (as in pageperfect):
-- an index on it could not serve ORDER BY msg_id, and would make every read's UPDATE of vt a
-- non-HOT update that inserts into every index.
CREATE TABLE bench_queue (
    msg_id      bigserial PRIMARY KEY,
    vt          timestamptz NOT NULL DEFAULT now(),
    read_ct     int NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    message     jsonb NOT NULL
);

-- The backlog: reads take the oldest messages, each transaction sends as many as it deletes, so
-- both queues hold about :backlog messages throughout the run.
SELECT count(*) AS pageperfect_backlog
  FROM pageperfect.send_batch('bench', ARRAY(SELECT bench_message(i) FROM generate_series(1, :backlog) AS i));
INSERT INTO bench_queue (message) SELECT bench_message(i) FROM generate_series(1, :backlog) AS i;
