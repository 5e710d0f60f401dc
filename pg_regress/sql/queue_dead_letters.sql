-- Dead letters after N reads (pgmq has none, pgmq#274): a message read max_reads times that comes
-- round again goes to the dead letter queue (or the archive) instead of being read once more.
\set VERBOSITY terse
SELECT pageperfect.create_queue('dl_work'), pageperfect.create_queue('dl_dead');
SELECT pageperfect.set_dead_letter('dl_work', 2, 'dl_dead');
SELECT max_reads, dead_letter_queue FROM pageperfect.queues WHERE queue_name = 'dl_work';
SELECT pageperfect.send('dl_work', '{"job": 1}', headers => '{"trace": "t1"}') AS poison \gset
SELECT pageperfect.send('dl_work', '{"job": 2}') AS healthy \gset
-- Read twice (vt 0: it comes round at once); the third time it is moved, and the read goes on
-- to the next message.
SELECT message, read_ct FROM pageperfect.read('dl_work', 0, 1);
SELECT message, read_ct FROM pageperfect.read('dl_work', 0, 1);
SELECT pageperfect.delete('dl_work', :healthy) AS healthy_done;
SELECT message, read_ct FROM pageperfect.read('dl_work', 0, 1);
SELECT count(*) AS left_in_work FROM pageperfect.queue_messages WHERE queue_name = 'dl_work';
SELECT message, headers - 'x-original-msg-id' AS headers, (headers ->> 'x-original-msg-id')::bigint = :poison AS from_the_poison_message
  FROM pageperfect.read('dl_dead', 30, 1);
-- Without a dead letter queue: to the archive. Large reads do it too.
SELECT pageperfect.set_dead_letter('dl_work', 1);
SELECT count(*) AS sent FROM pageperfect.send_batch('dl_work', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]);
SELECT count(*) AS first_reads FROM pageperfect.read('dl_work', 0, 50);
SELECT count(*) AS second_reads FROM pageperfect.read('dl_work', 0, 50);
SELECT count(*) AS archived, min(read_ct) AS read_ct FROM pageperfect.queue_archive WHERE queue_name = 'dl_work';
-- Off again: read as often as they come round.
SELECT pageperfect.set_dead_letter('dl_work', NULL);
SELECT pageperfect.send('dl_work', '{"n": 4}') > 0 AS sent;
SELECT count(*) FROM pageperfect.read('dl_work', 0, 1);
SELECT count(*) FROM pageperfect.read('dl_work', 0, 1);
-- What is refused: a queue as its own dead letter queue, a count below 1, a queue one cannot use.
SELECT pageperfect.set_dead_letter('dl_work', 3, 'dl_work');
SELECT pageperfect.set_dead_letter('dl_work', 0);
CREATE ROLE dl_mallory IN ROLE pageperfect_user;
SET ROLE dl_mallory;
SELECT pageperfect.create_queue('dl_mallory_q');
SELECT pageperfect.set_dead_letter('dl_mallory_q', 1, 'dl_dead');
SELECT pageperfect.set_dead_letter('dl_work', 1);
UPDATE pageperfect.queues SET max_reads = 1 WHERE queue_name = 'dl_work';
SELECT pageperfect.drop_queue('dl_mallory_q');
RESET ROLE;
DROP ROLE dl_mallory;
SELECT pageperfect.drop_queue('dl_work'), pageperfect.drop_queue('dl_dead');
