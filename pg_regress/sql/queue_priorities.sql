-- Priorities with aging: higher priority is read (and claimed) first; what waits longer than
-- priority_aging_seconds below the top priority of its queue or stage gains 1 per interval
-- (pipeline worker 1 calls age_priorities()), so low priority still progresses.
SELECT pageperfect.create_queue('prio');
SELECT pageperfect.send('prio', '{"n": "low, old"}') AS low_old \gset
SELECT pageperfect.send('prio', '{"n": "low, new"}') AS low_new \gset
SELECT pageperfect.send('prio', '{"n": "high"}', 0, 3) AS high \gset
SELECT message->>'n' AS read_order FROM pageperfect.read('prio', 0, 10);
-- The old low-priority message has waited 10 minutes; the aging interval is 5.
UPDATE pageperfect.queue_messages SET enqueued_at = now() - interval '10 minutes' WHERE msg_id = :low_old;
SELECT pageperfect.age_priorities();
SELECT pageperfect.age_priorities() -> 'messages' AS raised, pageperfect.age_priorities() -> 'messages' AS raised_again,
       pageperfect.age_priorities() -> 'messages' AS at_the_top;
SELECT message->>'n' AS n, priority FROM pageperfect.queue_messages WHERE queue_name = 'prio' ORDER BY msg_id;
-- Equal at the top, the older goes first.
SELECT message->>'n' AS read_order FROM pageperfect.read('prio', 0, 10);
SELECT pageperfect.drop_queue('prio');

-- Workflows: a job's priority orders its stages' claims, and waiting stages age the same way.
SELECT pageperfect.enqueue_job('https://example.com/low') AS low_job \gset
SELECT pageperfect.enqueue_job('https://example.com/high', priority => 5) AS high_job \gset
UPDATE pageperfect.queue_messages m SET enqueued_at = now() - interval '10 minutes'
  FROM pageperfect.job_stages s WHERE s.msg_id = m.msg_id AND s.job_id = :'low_job';
SELECT pageperfect.age_priorities() -> 'stages' AS stages_raised;
SELECT j.url, s.stage, s.priority FROM pageperfect.job_stages s JOIN pageperfect.jobs j ON j.id = s.job_id
 WHERE s.status = 'queued' AND j.id IN (:'low_job', :'high_job') ORDER BY j.url;
-- Clean up for the files after this one (cancelling drops the jobs' queue messages too).
SELECT pageperfect.cancel_job(:'low_job') AND pageperfect.cancel_job(:'high_job') AS cancelled;
DELETE FROM pageperfect.jobs WHERE id IN (:'low_job', :'high_job');
