-- Unique jobs: a workflow for a URL that the caller already has queued or running is returned
-- instead of a second crawl; enqueue_job takes any key, and a window.
SELECT pageperfect.run_workflow('https://example.com/twice') AS first \gset
SELECT pageperfect.run_workflow('https://example.com/twice') = :'first' AS same_job;
SELECT pageperfect.run_workflow('https://example.com/twice', deduplicate => false) <> :'first' AS another_when_asked;
SELECT count(*) AS jobs_for_the_url FROM pageperfect.jobs WHERE url = 'https://example.com/twice';
-- Another role's workflow for the same URL is its own.
CREATE ROLE unique_bob IN ROLE pageperfect_user;
SET ROLE unique_bob;
SELECT pageperfect.run_workflow('https://example.com/twice') IS NOT NULL AS bobs_own;
RESET ROLE;
SELECT owner, count(*) FROM pageperfect.jobs WHERE url = 'https://example.com/twice' GROUP BY owner ORDER BY owner;
-- Once the job has ended the key is free again (no window) ...
SELECT pageperfect.cancel_job(:'first') AS cancelled;
SELECT pageperfect.run_workflow('https://example.com/twice') <> :'first' AS new_after_it_ended;
-- ... unless a window says otherwise: within it, even an ended job is returned.
SELECT pageperfect.enqueue_job('https://example.com/report', unique_key => 'daily-report', unique_window => '1 hour') AS report \gset
SELECT pageperfect.cancel_job(:'report') AS cancelled;
SELECT pageperfect.enqueue_job('https://example.com/report', unique_key => 'daily-report', unique_window => '1 hour') = :'report' AS same_within_window;
SELECT pageperfect.enqueue_job('https://example.com/report', unique_key => 'daily-report') <> :'report' AS new_without_window;
-- Clean up for the files after this one.
SELECT count(pageperfect.cancel_job(id)) >= 0 AS cancelled FROM pageperfect.jobs
 WHERE url IN ('https://example.com/twice', 'https://example.com/report');
DELETE FROM pageperfect.jobs WHERE url IN ('https://example.com/twice', 'https://example.com/report');
DROP ROLE unique_bob;
