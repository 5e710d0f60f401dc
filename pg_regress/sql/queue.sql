-- The queue API (pgmq's functions on pageperfect's tables), what a pageperfect_user may see of
-- it, and the job engine's SQL state transitions. No worker processes anything in this database
-- (the workers of this cluster attach to database postgres), so this session claims, completes
-- and fails every stage itself. Ids, uuids and timestamps vary between runs: they are carried in
-- psql variables and only compared, never printed.
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

-- The error a statement raises: SQLSTATE, message (with `mask` replaced) and hint. Used for the
-- functions written in Rust: errors they re-raise carry a backtrace in their DETAIL when
-- RUST_BACKTRACE is set.
CREATE FUNCTION pg_temp.error_of(statement text, mask text DEFAULT NULL, replacement text DEFAULT NULL)
RETURNS TABLE (code text, error text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN QUERY SELECT NULL::text, 'no error'::text, NULL::text;
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, error = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    IF mask IS NOT NULL THEN
        error := regexp_replace(error, mask, replacement);
    END IF;
    RETURN NEXT;
END
$$;

------------------------------------------------------------------------------------------------
-- Queue API
------------------------------------------------------------------------------------------------

-- create_queue is idempotent; the pipeline's own queue is there from the start.
SELECT pageperfect.create_queue('orders');
SELECT pageperfect.create_queue('orders');
SELECT pageperfect.create_queue('other-queue_2');
SELECT pageperfect.create_queue(repeat('q', 63));
SELECT queue_name FROM pageperfect.list_queues();
SELECT pageperfect.drop_queue(repeat('q', 63));

-- Names: 1 to 63 of [A-Za-z0-9_-], not starting with a hyphen; pageperfect_* is reserved.
SELECT pageperfect.create_queue('');
SELECT pageperfect.create_queue('has space');
SELECT pageperfect.create_queue('-leading-hyphen');
SELECT pageperfect.create_queue(repeat('q', 64));
SELECT pageperfect.create_queue(NULL);
SELECT pageperfect.create_queue('pageperfect_mine');
SELECT count(*) AS queues FROM pageperfect.queues;

-- send and send_batch return the new ids, in order.
SELECT pageperfect.send('orders', '{"n": 1}') AS m1 \gset
SELECT pageperfect.send('orders', '{"n": 2}') AS m2 \gset
SELECT array_agg(id ORDER BY n) AS batch
  FROM pageperfect.send_batch('orders', ARRAY['{"n": 3}', '{"n": 4}', '{"n": 5}']::jsonb[]) WITH ORDINALITY AS b (id, n) \gset
SELECT n, id - :m1 AS msg FROM unnest(ARRAY[:m1, :m2] || :'batch'::bigint[]) WITH ORDINALITY AS u (id, n);
SELECT count(*) AS empty_batch FROM pageperfect.send_batch('orders', '{}');
-- A delayed message is invisible until its delay is over.
SELECT pageperfect.send('orders', '{"n": 6}', 3600) AS m_late \gset
SELECT msg_id - :m1 AS msg, read_ct, priority, message, vt > now() + interval '3500 seconds' AS delayed
  FROM pageperfect.queue_messages WHERE queue_name = 'orders' ORDER BY msg_id;
SELECT queue_name, queue_length, total_messages, queue_visible_length,
       newest_msg_age_sec >= 0 AS has_ages, scrape_time IS NOT NULL AS scraped
  FROM pageperfect.metrics('orders');

-- read: qty messages, oldest first, then invisible for vt seconds; read_ct counts the reads.
SELECT msg_id - :m1 AS msg, read_ct, message, vt > now() + interval '20 seconds' AS hidden_30s
  FROM pageperfect.read('orders', 30, 2);
SELECT msg_id - :m1 AS msg, read_ct, message FROM pageperfect.read('orders', 30, 10);
SELECT count(*) AS nothing_visible FROM pageperfect.read('orders', 30, 10);
SELECT queue_length, queue_visible_length FROM pageperfect.metrics('orders');

-- set_vt makes a message visible again (0) or hides it; it returns the message, or no row.
SELECT msg_id - :m1 AS msg, read_ct, message, vt <= clock_timestamp() AS visible
  FROM pageperfect.set_vt('orders', :m1, 0);
SELECT msg_id - :m1 AS msg, read_ct, message FROM pageperfect.read('orders', 30, 10);
SELECT msg_id - :m1 AS msg, message FROM pageperfect.set_vt('orders', :m_late, 0);
SELECT msg_id - :m1 AS msg, read_ct, message FROM pageperfect.read('orders', 0, 10);
SELECT count(*) AS unknown_msg FROM pageperfect.set_vt('orders', -1, 0);
SELECT count(*) AS other_queues_msg FROM pageperfect.set_vt('other-queue_2', :m1, 0);

-- pop takes and deletes at once (the read with vt 0 above left n = 6 visible).
SELECT msg_id - :m1 AS msg, read_ct, message FROM pageperfect.pop('orders');
SELECT count(*) AS popped_again FROM pageperfect.pop('orders', 5);
SELECT count(*) AS left_in_queue FROM pageperfect.queue_messages WHERE queue_name = 'orders';

-- delete: true once, then false; only in the queue named; the array form returns what it deleted.
SELECT pageperfect.delete('other-queue_2', :m1) AS from_wrong_queue;
SELECT pageperfect.delete('orders', :m1) AS deleted;
SELECT pageperfect.delete('orders', :m1) AS deleted_again;
SELECT id - :m1 AS deleted_msg
  FROM pageperfect.delete('orders', ARRAY[(:'batch'::bigint[])[1], (:'batch'::bigint[])[2], -1]) AS id ORDER BY 1;

-- archive moves messages to queue_archive, as they were.
SELECT pageperfect.archive('orders', (:'batch'::bigint[])[3]) AS archived;
SELECT pageperfect.archive('orders', (:'batch'::bigint[])[3]) AS archived_again;
SELECT id - :m1 AS archived_msg FROM pageperfect.archive('orders', ARRAY[:m2, -1]) AS id;
SELECT msg_id - :m1 AS msg, queue_name, read_ct, priority, message, archived_at IS NOT NULL AS stamped
  FROM pageperfect.queue_archive ORDER BY msg_id;
-- Every message has gone; total_messages still counts all 6 ever sent.
SELECT queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queue_visible_length
  FROM pageperfect.metrics('orders');

-- purge_queue deletes the messages (not the archive) and says how many.
SELECT count(*) AS sent FROM pageperfect.send_batch('orders', ARRAY['{"p": 1}', '{"p": 2}', '{"p": 3}']::jsonb[], 60);
SELECT pageperfect.send('other-queue_2', '{"o": 1}') AS other_msg \gset
SELECT queue_name, queue_length, total_messages, queue_visible_length FROM pageperfect.metrics_all();
SELECT pageperfect.purge_queue('orders') AS purged;
SELECT pageperfect.purge_queue('orders') AS purged_again;
SELECT queue_name, count(*) FROM pageperfect.queue_archive GROUP BY 1;
SELECT queue_name, queue_length, total_messages FROM pageperfect.metrics_all();

-- Errors: missing queue, bad vt, delay and qty, NULL message or queue name.
SELECT pageperfect.send('nope', '{}');
SELECT * FROM pageperfect.send_batch('nope', ARRAY['{}']::jsonb[]);
SELECT * FROM pageperfect.read('nope', 10, 1);
SELECT * FROM pageperfect.pop('nope');
SELECT pageperfect.delete('nope', 1);
SELECT pageperfect.archive('nope', ARRAY[1::bigint]);
SELECT * FROM pageperfect.set_vt('nope', 1, 0);
SELECT * FROM pageperfect.metrics('nope');
SELECT pageperfect.purge_queue('nope');
SELECT * FROM pageperfect.read(NULL, 10, 1);
SELECT * FROM pageperfect.read('orders', -1, 1);
SELECT * FROM pageperfect.read('orders', 10, 0);
SELECT * FROM pageperfect.read('orders', 10, NULL);
SELECT * FROM pageperfect.pop('orders', 0);
SELECT * FROM pageperfect.set_vt('orders', 1, -5);
SELECT pageperfect.send('orders', '{}', -1);
SELECT pageperfect.send('orders', NULL);
SELECT * FROM pageperfect.send_batch('orders', ARRAY['{}', NULL]::jsonb[]);
SELECT * FROM pageperfect.send_batch('orders', NULL);
SELECT total_messages AS nothing_was_sent FROM pageperfect.metrics('orders');

-- drop_queue: true, then false; the messages, archive and counters go with it.
SELECT pageperfect.drop_queue('orders') AS dropped;
SELECT pageperfect.drop_queue('orders') AS dropped_again;
SELECT (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'orders') AS messages,
       (SELECT count(*) FROM pageperfect.queue_archive WHERE queue_name = 'orders') AS archived,
       (SELECT count(*) FROM pageperfect.queue_sent_counts WHERE queue_name = 'orders') AS counters;
SELECT * FROM pageperfect.read('orders', 10, 1);
SELECT pageperfect.create_queue('orders');
SELECT queue_name, queue_length, total_messages FROM pageperfect.metrics('orders');
SELECT pageperfect.drop_queue('orders') AS dropped;

------------------------------------------------------------------------------------------------
-- Job engine: creating jobs
------------------------------------------------------------------------------------------------

-- Retry delays: base · 2^(attempt − 1) plus up to 25% jitter; a Retry-After is a floor.
SELECT d BETWEEN 4 AND 5 AS third_attempt_waits_4_to_5s
  FROM (SELECT pageperfect.retry_delay_seconds(1, 3) AS d FROM generate_series(1, 20)) t GROUP BY 1;
SELECT pageperfect.retry_delay_seconds(1, 1, 7) AS retry_after_floor,
       pageperfect.retry_delay_seconds(0, 5) AS no_base,
       pageperfect.retry_delay_seconds(100000, 3) AS capped_at_a_day;

-- Bad jobs are refused, and leave nothing behind.
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('ftp://example.com/')$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('example.com')$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('https://x.example/', ARRAY['test_sleep', 'nope'])$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('https://x.example/', skip_steps => ARRAY['nope'])$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('https://x.example/', ARRAY[]::text[])$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('https://x.example/', ARRAY['test_sleep', 'test_flaky', 'test_sleep'])$$);
SELECT * FROM pg_temp.error_of($$SELECT pageperfect.enqueue_job('https://x.example/', options => '[1]')$$);
SELECT (SELECT count(*) FROM pageperfect.jobs) AS jobs,
       (SELECT count(*) FROM pageperfect.job_events) AS events,
       (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline') AS messages;

-- Job A: two stages, priority 5. Its first stage is queued with a message in the pipeline queue.
SELECT pageperfect.enqueue_job('https://a.example/', ARRAY['test_sleep', 'test_flaky'], '{"fail_times": 2}', 5) AS job_a \gset
SELECT url, owner = current_user AS mine, status, stage, priority, attempt_count, skip_steps, force_update, options, result
  FROM pageperfect.jobs WHERE id = :'job_a';
SELECT stage, position, status, attempt_count, max_attempts, retry_delay_seconds, msg_id IS NOT NULL AS has_msg,
       claimed_pid, orphaned_count
  FROM pageperfect.job_stages WHERE job_id = :'job_a' ORDER BY position;
SELECT m.msg_id AS a_sleep_msg FROM pageperfect.job_stages s JOIN pageperfect.queue_messages m USING (msg_id)
 WHERE s.job_id = :'job_a' AND s.stage = 'test_sleep' \gset
SELECT queue_name, read_ct, priority, vt <= clock_timestamp() AS visible,
       message = jsonb_build_object('job_id', :'job_a'::uuid, 'stage', 'test_sleep') AS names_job_and_stage
  FROM pageperfect.queue_messages WHERE msg_id = :a_sleep_msg;
SELECT stage, event, message, data -> 'stages' AS stages FROM pageperfect.job_events WHERE job_id = :'job_a' ORDER BY id;

-- Job B: skip_steps marks a stage skipped; the job starts at the next one.
SELECT pageperfect.enqueue_job('https://b.example/', ARRAY['test_sleep', 'test_flaky', 'test_permanent'],
                               skip_steps => ARRAY['test_sleep']) AS job_b \gset
SELECT status, stage, skip_steps FROM pageperfect.jobs WHERE id = :'job_b';
SELECT stage, position, status, msg_id IS NOT NULL AS has_msg FROM pageperfect.job_stages WHERE job_id = :'job_b' ORDER BY position;
SELECT stage, event, message FROM pageperfect.job_events WHERE job_id = :'job_b' ORDER BY id;

-- Job C: no stages named, so the default pipeline, with the limits of stage_config.
SELECT pageperfect.enqueue_job('https://c.example/', force_update => true) AS job_c \gset
SELECT status, stage, force_update FROM pageperfect.jobs WHERE id = :'job_c';
SELECT stage, position, status, max_attempts, retry_delay_seconds FROM pageperfect.job_stages WHERE job_id = :'job_c' ORDER BY position;

-- Job D: one stage.
SELECT pageperfect.enqueue_job('https://d.example/', ARRAY['test_sleep']) AS job_d \gset

-- Candidates: visible pipeline messages of claimable stages, highest priority first, then the work
-- furthest along its job, then the oldest, with the load of their stage and owner.
SELECT j.url, c.stage, c.msg_id = s.msg_id AS stage_msg, c.owner = current_user AS mine,
       c.stage_busy, c.stage_limit, c.owner_busy, c.owner_limit
  FROM pageperfect.claim_candidates(10) WITH ORDINALITY AS c
  JOIN pageperfect.jobs j ON j.id = c.job_id
  JOIN pageperfect.job_stages s ON s.job_id = c.job_id AND s.stage = c.stage
 ORDER BY c.ordinality;
SELECT count(*) AS lookahead_2 FROM pageperfect.claim_candidates(2);

------------------------------------------------------------------------------------------------
-- Job engine: a stage that succeeds (job A, test_sleep)
------------------------------------------------------------------------------------------------

-- The claim starts attempt 1 for this backend: pid and backend start are recorded, the message
-- is hidden for the stage's timeout plus a minute, the job is processing, an event says so.
SELECT job_id = :'job_a' AS job_a, stage, attempt, url, page_id, owner = current_user AS mine, options,
       force_update, timeout_seconds
  FROM pageperfect.claim_stages(ARRAY[:a_sleep_msg]);
SELECT s.status, s.attempt_count, s.claimed_pid = pg_backend_pid() AS claimed_by_me,
       s.claimed_backend_start = a.backend_start AS same_backend, s.started_at IS NOT NULL AS started,
       s.next_attempt_at
  FROM pageperfect.job_stages s JOIN pg_stat_activity a ON a.pid = pg_backend_pid()
 WHERE s.job_id = :'job_a' AND s.stage = 'test_sleep';
SELECT read_ct, vt > clock_timestamp() + interval '80 seconds' AS hidden_for_timeout
  FROM pageperfect.queue_messages WHERE msg_id = :a_sleep_msg;
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_a';
SELECT stage, event, message, (data ->> 'pid')::int = pg_backend_pid() AS my_pid
  FROM pageperfect.job_events WHERE job_id = :'job_a' AND event = 'started';
-- A claimed stage is no candidate, and cannot be claimed twice.
SELECT count(*) AS a_candidates FROM pageperfect.claim_candidates(10) WHERE job_id = :'job_a';
SELECT count(*) AS claimed_again FROM pageperfect.claim_stages(ARRAY[:a_sleep_msg]);
SELECT j.url, c.stage, c.stage_busy, c.owner_busy
  FROM pageperfect.claim_candidates(10) WITH ORDINALITY AS c JOIN pageperfect.jobs j ON j.id = c.job_id
 ORDER BY c.ordinality;
-- A stage at its limit offers nothing, so its backlog hides no other stage's work even when the
-- lookahead is short.
UPDATE pageperfect.stage_config SET concurrency = 1 WHERE stage = 'test_sleep';
SELECT j.url, c.stage, c.stage_busy, c.stage_limit
  FROM pageperfect.claim_candidates(1) AS c JOIN pageperfect.jobs j ON j.id = c.job_id;
UPDATE pageperfect.stage_config SET concurrency = 8 WHERE stage = 'test_sleep';
-- An owner at its limit offers nothing either (here: one job at a time, and A's is running).
SELECT value AS owner_limit_was FROM pageperfect.parameters WHERE name = 'max_jobs_per_owner' \gset
UPDATE pageperfect.parameters SET value = '1' WHERE name = 'max_jobs_per_owner';
SELECT count(*) AS candidates_at_owner_limit FROM pageperfect.claim_candidates(10);
UPDATE pageperfect.parameters SET value = :'owner_limit_was' WHERE name = 'max_jobs_per_owner';

-- Reports for another attempt, stage or job are stale and change nothing.
SELECT pageperfect.complete_stage(:'job_a', 'test_sleep', 2, '{}') AS wrong_attempt,
       pageperfect.complete_stage(:'job_a', 'test_flaky', 1, '{}') AS wrong_stage,
       pageperfect.complete_stage(:'job_b', 'test_sleep', 1, '{}') AS wrong_job,
       pageperfect.fail_stage(:'job_a', 'test_sleep', 2, 'late', false, NULL) AS wrong_attempt_failing;
SELECT status, attempt_count FROM pageperfect.job_stages WHERE job_id = :'job_a' AND stage = 'test_sleep';

-- Completing stores the payload, deletes the message and queues the next stage; completing the
-- same attempt again is stale.
SELECT pageperfect.complete_stage(:'job_a', 'test_sleep', 1, '{"slept_ms": 50}') AS completed;
SELECT pageperfect.complete_stage(:'job_a', 'test_sleep', 1, '{"slept_ms": 99}') AS completed_again;
SELECT stage, status, attempt_count, claimed_pid, msg_id IS NOT NULL AS has_msg, completed_at IS NOT NULL AS done_at
  FROM pageperfect.job_stages WHERE job_id = :'job_a' ORDER BY position;
SELECT stage, data FROM pageperfect.payloads WHERE job_id = :'job_a';
SELECT count(*) AS old_msg FROM pageperfect.queue_messages WHERE msg_id = :a_sleep_msg;
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_a';

------------------------------------------------------------------------------------------------
-- Job engine: retries and the dead letters (job A, test_flaky: 3 attempts)
------------------------------------------------------------------------------------------------

SELECT msg_id AS a_flaky_msg FROM pageperfect.job_stages WHERE job_id = :'job_a' AND stage = 'test_flaky' \gset
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:a_flaky_msg]);
-- Attempt 1 fails with a Retry-After of 600 s: the stage waits (failed), its message is hidden.
SELECT pageperfect.fail_stage(:'job_a', 'test_flaky', 1, 'HTTP 503', false, 600) AS outcome;
SELECT status, attempt_count, last_error, claimed_pid, msg_id = :a_flaky_msg AS same_msg,
       next_attempt_at > clock_timestamp() + interval '590 seconds' AS waits_600s
  FROM pageperfect.job_stages WHERE job_id = :'job_a' AND stage = 'test_flaky';
SELECT abs(extract(epoch FROM m.vt - s.next_attempt_at)) < 1 AS hidden_until_retry
  FROM pageperfect.queue_messages m JOIN pageperfect.job_stages s USING (msg_id) WHERE m.msg_id = :a_flaky_msg;
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_a';
SELECT event, message, data ->> 'attempt' AS attempt, data ->> 'error' AS error,
       data ->> 'delay_seconds' AS delay, data ->> 'retry_after_seconds' AS retry_after
  FROM pageperfect.job_events WHERE job_id = :'job_a' AND stage = 'test_flaky' AND event IN ('failed', 'retry_scheduled')
 ORDER BY id;
SELECT count(*) AS a_candidates FROM pageperfect.claim_candidates(10) WHERE job_id = :'job_a';

-- The backoff elapses (simulated): the failed stage is a candidate again, and attempt 2 fails
-- without a Retry-After: backoff 1 s · 2^1 plus jitter.
UPDATE pageperfect.queue_messages SET vt = now() WHERE msg_id = :a_flaky_msg;
-- Job A's second stage comes before the first stages of jobs queued before it reached it.
SELECT j.url, c.stage, s.position
  FROM pageperfect.claim_candidates(10) WITH ORDINALITY AS c
  JOIN pageperfect.jobs j ON j.id = c.job_id
  JOIN pageperfect.job_stages s ON s.job_id = c.job_id AND s.stage = c.stage
 ORDER BY c.ordinality;
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:a_flaky_msg]);
SELECT pageperfect.fail_stage(:'job_a', 'test_flaky', 2, 'HTTP 502', false, NULL) AS outcome;
SELECT (data ->> 'delay_seconds')::float8 BETWEEN 2 AND 2.5 AS delay_2_to_2_5s, data -> 'retry_after_seconds' AS retry_after
  FROM pageperfect.job_events WHERE job_id = :'job_a' AND event = 'retry_scheduled' ORDER BY id DESC LIMIT 1;

-- Attempt 3 of 3 fails: the stage and job are dead, the message moves to dead_letters.
UPDATE pageperfect.queue_messages SET vt = now() WHERE msg_id = :a_flaky_msg;
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:a_flaky_msg]);
SELECT pageperfect.fail_stage(:'job_a', 'test_flaky', 3, 'HTTP 500', false, NULL) AS outcome;
SELECT pageperfect.fail_stage(:'job_a', 'test_flaky', 3, 'HTTP 500', false, NULL) AS outcome_again;
SELECT stage, status, attempt_count, last_error, msg_id, claimed_pid, next_attempt_at
  FROM pageperfect.job_stages WHERE job_id = :'job_a' ORDER BY position;
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_a';
SELECT count(*) AS msg_left FROM pageperfect.queue_messages WHERE msg_id = :a_flaky_msg;
SELECT id AS a_letter FROM pageperfect.dead_letters WHERE job_id = :'job_a' \gset
SELECT queue, msg_id = :a_flaky_msg AS same_msg, stage, reason, error, attempt_count,
       message = jsonb_build_object('job_id', :'job_a'::uuid, 'stage', 'test_flaky') AS message_kept, retried_at
  FROM pageperfect.dead_letters WHERE id = :a_letter;

-- retry_dead_letter puts it back with a fresh set of attempts; only once.
SELECT pageperfect.retry_dead_letter(:a_letter) AS a_retry_msg \gset
SELECT status, attempt_count, orphaned_count, msg_id = :a_retry_msg AS new_msg, last_error
  FROM pageperfect.job_stages WHERE job_id = :'job_a' AND stage = 'test_flaky';
SELECT queue_name, priority, vt <= clock_timestamp() AS visible,
       message = jsonb_build_object('job_id', :'job_a'::uuid, 'stage', 'test_flaky') AS names_job_and_stage
  FROM pageperfect.queue_messages WHERE msg_id = :a_retry_msg;
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_a';
SELECT retried_at IS NOT NULL AS retried FROM pageperfect.dead_letters WHERE id = :a_letter;
SELECT * FROM pg_temp.error_of(format('SELECT pageperfect.retry_dead_letter(%s)', :a_letter), '\d+ was already retried at .*',
                               'N was already retried at <time>');
SELECT * FROM pg_temp.error_of('SELECT pageperfect.retry_dead_letter(-1)');
SELECT pageperfect.retry_dead_letter(NULL) AS strict;

-- The last stage completes, and with it the job: its result is the last stage's payload.
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:a_retry_msg]);
SELECT pageperfect.complete_stage(:'job_a', 'test_flaky', 1, '{"succeeded_at_attempt": 1}') AS outcome;
SELECT pageperfect.complete_stage(:'job_a', 'test_flaky', 1, '{"succeeded_at_attempt": 1}') AS outcome_again;
SELECT status, stage, attempt_count, result, last_completed_at IS NOT NULL AS completed_at
  FROM pageperfect.jobs WHERE id = :'job_a';
SELECT stage, status, msg_id FROM pageperfect.job_stages WHERE job_id = :'job_a' ORDER BY position;
SELECT count(*) AS a_messages FROM pageperfect.queue_messages WHERE message ->> 'job_id' = :'job_a';
SELECT stage, event FROM pageperfect.job_events WHERE job_id = :'job_a' ORDER BY id;

------------------------------------------------------------------------------------------------
-- Job engine: orphans and a permanent error (job B)
------------------------------------------------------------------------------------------------

SELECT msg_id AS b_flaky_msg FROM pageperfect.job_stages WHERE job_id = :'job_b' AND stage = 'test_flaky' \gset
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:b_flaky_msg]);
-- A stage held by a live backend is no orphan.
SELECT pageperfect.requeue_orphaned_stages() AS requeued;
-- Its worker dies (simulated): the stage goes back to the queue at once, visible, and the
-- attempt cut short does not count.
UPDATE pageperfect.job_stages SET claimed_pid = 999999 WHERE job_id = :'job_b' AND stage = 'test_flaky';
SELECT pageperfect.requeue_orphaned_stages() AS requeued;
SELECT pageperfect.requeue_orphaned_stages() AS requeued_again;
SELECT status, attempt_count, orphaned_count, claimed_pid, msg_id = :b_flaky_msg AS same_msg
  FROM pageperfect.job_stages WHERE job_id = :'job_b' AND stage = 'test_flaky';
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_b';
SELECT vt <= clock_timestamp() AS visible FROM pageperfect.queue_messages WHERE msg_id = :b_flaky_msg;
SELECT event, message FROM pageperfect.job_events WHERE job_id = :'job_b' AND event = 'requeued';
-- The dead worker's late result is stale; the new claim runs attempt 1 again and completes.
SELECT pageperfect.complete_stage(:'job_b', 'test_flaky', 1, '{}') AS late_result;
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:b_flaky_msg]);
SELECT pageperfect.complete_stage(:'job_b', 'test_flaky', 1, '{"succeeded_at_attempt": 1}') AS outcome;
-- A permanent error goes to the dead letters at the first attempt.
SELECT msg_id AS b_perm_msg FROM pageperfect.job_stages WHERE job_id = :'job_b' AND stage = 'test_permanent' \gset
SELECT stage, attempt FROM pageperfect.claim_stages(ARRAY[:b_perm_msg]);
SELECT pageperfect.fail_stage(:'job_b', 'test_permanent', 1, '404 Not Found', true, NULL) AS outcome;
SELECT stage, status, attempt_count, last_error FROM pageperfect.job_stages WHERE job_id = :'job_b' ORDER BY position;
SELECT status, stage FROM pageperfect.jobs WHERE id = :'job_b';
SELECT stage, reason, error, attempt_count, msg_id = :b_perm_msg AS same_msg, retried_at
  FROM pageperfect.dead_letters WHERE job_id = :'job_b';
SELECT count(*) AS msg_left FROM pageperfect.queue_messages WHERE msg_id = :b_perm_msg;
SELECT stage, event FROM pageperfect.job_events WHERE job_id = :'job_b' ORDER BY id;

------------------------------------------------------------------------------------------------
-- Job engine: stuck work (job C) and a worker that keeps dying (job D)
------------------------------------------------------------------------------------------------

-- Several messages in one claim; the candidates show the load of each stage and owner.
SELECT msg_id AS c_msg FROM pageperfect.job_stages WHERE job_id = :'job_c' AND stage = 'submit_crawl' \gset
SELECT msg_id AS d_msg FROM pageperfect.job_stages WHERE job_id = :'job_d' AND stage = 'test_sleep' \gset
SELECT j.url, c.stage, c.attempt FROM pageperfect.claim_stages(ARRAY[:c_msg, :d_msg]) c
  JOIN pageperfect.jobs j ON j.id = c.job_id ORDER BY j.url;
SELECT stage, count(*) AS processing FROM pageperfect.job_stages WHERE status = 'processing' GROUP BY 1 ORDER BY 1;
-- Nothing is overdue by the stages' own time limits, nor orphaned.
SELECT pageperfect.sweep_stages() AS swept;
SELECT pageperfect.fail_overdue_stages() AS overdue;
-- D's worker died for the 10th time: the stage is dead-lettered instead of requeued.
UPDATE pageperfect.job_stages SET claimed_pid = 999999, orphaned_count = 9 WHERE job_id = :'job_d';
SELECT pageperfect.requeue_orphaned_stages() AS requeued;
SELECT status, msg_id, claimed_pid, last_error FROM pageperfect.job_stages WHERE job_id = :'job_d';
SELECT status FROM pageperfect.jobs WHERE id = :'job_d';
SELECT reason, error, attempt_count FROM pageperfect.dead_letters WHERE job_id = :'job_d';
SELECT count(*) AS msg_left FROM pageperfect.queue_messages WHERE msg_id = :d_msg;
-- reset_stuck_jobs('0 seconds'): C's stage, held by this live backend, is overdue; it counts as
-- a failed attempt and is retried. The late result of that attempt is stale.
SELECT pageperfect.reset_stuck_jobs('0 seconds') AS reset;
SELECT status, attempt_count, claimed_pid, next_attempt_at IS NOT NULL AS retry_due,
       last_error = format('stuck in processing for more than %s (worker pid %s)', '0 seconds'::interval, pg_backend_pid())
           AS stuck_error
  FROM pageperfect.job_stages WHERE job_id = :'job_c' AND stage = 'submit_crawl';
-- submit_crawl's backoff: 5 s · 2^0 plus jitter.
SELECT (data ->> 'delay_seconds')::float8 BETWEEN 5 AND 6.25 AS delay_5_to_6_25s
  FROM pageperfect.job_events WHERE job_id = :'job_c' AND event = 'retry_scheduled';
SELECT status, stage, attempt_count FROM pageperfect.jobs WHERE id = :'job_c';
SELECT pageperfect.complete_stage(:'job_c', 'submit_crawl', 1, '{}') AS late_result;
SELECT pageperfect.reset_stuck_jobs('0 seconds') AS reset_again;
SELECT stage, event FROM pageperfect.job_events WHERE job_id = :'job_c' ORDER BY id;
SELECT stage, event FROM pageperfect.job_events WHERE job_id = :'job_d' ORDER BY id;

------------------------------------------------------------------------------------------------
-- Reports
------------------------------------------------------------------------------------------------

-- last_error: the error behind a retry or a dead letter; a completed job (A) shows none.
SELECT url, status, stage, attempt_count, regexp_replace(last_error, 'pid \d+\)$', 'pid N)') AS last_error
  FROM pageperfect.v_job_status ORDER BY url;
-- Job C's stage waits for its retry; B and D are dead; A's two stages and B's flaky one completed.
SELECT stage, concurrency, queued, processing, waiting_retry, dead, completed_last_hour,
       oldest_queued_at IS NOT NULL AS has_queued
  FROM pageperfect.processor_status();
SELECT stage, attempts, succeeded, failed, round(success_rate::numeric, 3) AS success_rate,
       throughput_per_minute > 0 AS throughput, latency_p50_ms >= 0 AS has_latency,
       jsonb_array_length(top_errors) AS errors
  FROM pageperfect.execution_insights();
SELECT top_errors FROM pageperfect.execution_insights() WHERE stage = 'test_flaky';
-- The next pipeline message to become visible is C's retry.
SELECT pageperfect.next_pipeline_wakeup() = vt AS wakes_for_c FROM pageperfect.queue_messages WHERE msg_id = :c_msg;
-- Work that is visible already is no reason to wake: a worker claims it when a slot frees.
SELECT pageperfect.enqueue_job('https://e.example/', ARRAY['test_sleep']) AS job_e \gset
SELECT pageperfect.next_pipeline_wakeup() = vt AS still_wakes_for_c FROM pageperfect.queue_messages WHERE msg_id = :c_msg;
DELETE FROM pageperfect.queue_messages WHERE msg_id = (SELECT msg_id FROM pageperfect.job_stages WHERE job_id = :'job_e');
DELETE FROM pageperfect.jobs WHERE id = :'job_e';

-- A plain (non-job) dead letter goes back to its queue.
SELECT pageperfect.create_queue('letters');
INSERT INTO pageperfect.dead_letters (queue, msg_id, message, reason) VALUES ('letters', 1, '{"l": 1}', 'by hand')
RETURNING id AS plain_letter \gset
SELECT pageperfect.retry_dead_letter(:plain_letter) AS plain_msg \gset
SELECT queue_name, message FROM pageperfect.queue_messages WHERE msg_id = :plain_msg;
SELECT pageperfect.drop_queue('letters');

------------------------------------------------------------------------------------------------
-- Row-level security: pageperfect_user and the pipeline's own queue
------------------------------------------------------------------------------------------------

CREATE ROLE pp_queue_user LOGIN IN ROLE pageperfect_user;
SELECT count(*) AS pipeline_messages FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline';
SET ROLE pp_queue_user;
-- Its own queues work as for anyone.
SELECT pageperfect.create_queue('user_q');
SELECT pageperfect.send('user_q', '{"u": 1}') IS NOT NULL AS sent;
SELECT read_ct, message FROM pageperfect.read('user_q', 30, 5);
SELECT queue_name, queue_length, total_messages FROM pageperfect.metrics('user_q');
-- The pipeline's queue does not exist for it, whichever way it looks.
SELECT queue_name FROM pageperfect.list_queues();
SELECT queue_name FROM pageperfect.metrics_all();
SELECT * FROM pageperfect.read('pageperfect_pipeline', 30, 1);
SELECT * FROM pageperfect.pop('pageperfect_pipeline');
SELECT pageperfect.send('pageperfect_pipeline', '{}');
SELECT * FROM pageperfect.metrics('pageperfect_pipeline');
SELECT pageperfect.purge_queue('pageperfect_pipeline');
SELECT pageperfect.drop_queue('pageperfect_pipeline') AS dropped;
SELECT pageperfect.create_queue('pageperfect_pipeline');
SELECT count(*) AS seen FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline';
SELECT count(*) AS seen FROM pageperfect.queue_sent_counts WHERE queue_name = 'pageperfect_pipeline';
INSERT INTO pageperfect.queue_messages (queue_name, message) VALUES ('pageperfect_pipeline', '{}');
WITH u AS (UPDATE pageperfect.queue_messages SET vt = now() WHERE queue_name = 'pageperfect_pipeline' RETURNING 1)
SELECT count(*) AS updated FROM u;
WITH d AS (DELETE FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline' RETURNING 1)
SELECT count(*) AS deleted FROM d;
-- It enqueues jobs of its own, sees only those, and cannot drive the engine.
SELECT pageperfect.enqueue_job('https://user.example/', ARRAY['test_sleep']) IS NOT NULL AS enqueued;
SELECT url, status, stage FROM pageperfect.v_job_status ORDER BY url;
SELECT url, owner FROM pageperfect.jobs;
SELECT stage, queued, dead FROM pageperfect.processor_status() WHERE queued + dead > 0;
SELECT * FROM pageperfect.claim_candidates(10);
SELECT * FROM pageperfect.claim_stages(ARRAY[:b_perm_msg]);
SELECT pageperfect.complete_stage(:'job_a', 'test_flaky', 1, '{}');
SELECT pageperfect.reset_stuck_jobs('0 seconds');
SELECT * FROM pg_temp.error_of(format('SELECT pageperfect.retry_dead_letter(%s)', :a_letter), 'letter \d+', 'letter N');
RESET ROLE;
-- Nothing it tried changed the pipeline: C's message and the user's job's.
SELECT count(*) AS pipeline_messages FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline';
SELECT status, retried_at IS NOT NULL AS retried FROM pageperfect.dead_letters d JOIN pageperfect.jobs j ON j.id = d.job_id
 ORDER BY j.url;
SELECT owner, url, status, stage FROM pageperfect.jobs WHERE owner = 'pp_queue_user';

-- Clean up for the files after this one.
DELETE FROM pageperfect.jobs;
SELECT pageperfect.purge_queue('pageperfect_pipeline') AS purged;
DELETE FROM pageperfect.queue_sent_counts WHERE queue_name = 'pageperfect_pipeline';
DELETE FROM pageperfect.dead_letters;
SELECT pageperfect.drop_queue('user_q'), pageperfect.drop_queue('other-queue_2');
SELECT queue_name FROM pageperfect.list_queues();
DROP ROLE pp_queue_user;
