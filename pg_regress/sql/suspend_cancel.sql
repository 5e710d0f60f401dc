-- Pause and resume a queue, a pipeline stage and the whole scheduler; cancel a cron run and a
-- workflow. (This database has no workers: jobs and runs stay where SQL puts them.)
\set VERBOSITY terse
SELECT pageperfect.create_queue('pausable');
SELECT pageperfect.send('pausable', '{"n": 1}') > 0 AS sent;
SELECT pageperfect.pause_queue('pausable') AS paused, pageperfect.pause_queue('pausable') AS paused_again;
-- Paused: reads and pops return nothing, sends are still accepted.
SELECT count(*) AS read_while_paused FROM pageperfect.read('pausable', 30, 10);
SELECT count(*) AS popped_while_paused FROM pageperfect.pop('pausable');
SELECT pageperfect.send('pausable', '{"n": 2}') > 0 AS sent_while_paused;
SELECT queue_length FROM pageperfect.metrics('pausable');
SELECT pageperfect.resume_queue('pausable') AS resumed, pageperfect.resume_queue('pausable') AS resumed_again;
SELECT message FROM pageperfect.read('pausable', 30, 10) ORDER BY msg_id;
SELECT pageperfect.pause_queue('no-such-queue');
SELECT pageperfect.drop_queue('pausable');

-- A stage can be paused by a superuser; workers then claim none of its work.
SELECT pageperfect.pause_stage('rewrite_draft') AS paused, pageperfect.pause_stage('rewrite_draft') AS paused_again;
SELECT stage, paused FROM pageperfect.stage_config WHERE paused;
SELECT pageperfect.resume_stage('rewrite_draft') AS resumed;
SELECT pageperfect.pause_stage('no_such_stage');

-- Cancelling a queued workflow: its stages end cancelled, its messages go; again is a no-op.
SELECT pageperfect.enqueue_job('https://example.com/cancel-me')::text AS job \gset
SELECT pageperfect.cancel_job(:'job') AS cancelled, pageperfect.cancel_job(:'job') AS cancelled_again;
SELECT status FROM pageperfect.jobs WHERE id = :'job';
SELECT status, count(*) FROM pageperfect.job_stages WHERE job_id = :'job' GROUP BY status;
SELECT count(*) AS messages_left FROM pageperfect.queue_messages m JOIN pageperfect.job_stages s ON s.msg_id = m.msg_id
 WHERE s.job_id = :'job';
SELECT event, message FROM pageperfect.job_events WHERE job_id = :'job' AND event = 'cancelled';
SELECT pageperfect.cancel_job('00000000-0000-0000-0000-000000000000');

-- Cancelling a queued cron run: recorded cancelled at once; an ended run is left alone.
SELECT cron.schedule('cancellable', '0 0 1 1 *', 'SELECT 1') AS cancellable_job \gset
INSERT INTO pageperfect.job_run_details (jobid, database, username, command, status, due_time)
SELECT jobid, database, username, command, 'starting', now() + interval '1 hour' FROM cron.job WHERE jobname = 'cancellable'
RETURNING runid AS queued_run \gset
SELECT pageperfect.cancel_run(:queued_run) AS cancelled, pageperfect.cancel_run(:queued_run) AS cancelled_again;
SELECT status, return_message FROM cron.job_run_details WHERE runid = :queued_run;
SELECT pageperfect.cancel_run(-1);
SELECT cron.unschedule('cancellable');

-- The whole scheduler pauses with pageperfect.launch_active_jobs = off (superusers, in the
-- server's configuration), as pg_cron's cron.launch_active_jobs.
SHOW pageperfect.launch_active_jobs;
