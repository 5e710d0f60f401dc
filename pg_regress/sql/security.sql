-- Secrets stay with superusers; pageperfect_user sees only its own rows.
CREATE ROLE pp_alice LOGIN IN ROLE pageperfect_user;
CREATE ROLE pp_bob LOGIN IN ROLE pageperfect_user;
GRANT USAGE ON SCHEMA cron TO pp_alice, pp_bob;

SET pageperfect.api_key = 'sk-superuser-only';
SHOW pageperfect.api_key;
SET ROLE pp_alice;
SHOW pageperfect.api_key;
SELECT current_setting('pageperfect.api_key');
SELECT count(*) AS listed FROM pg_settings WHERE name IN ('pageperfect.api_key', 'pageperfect.crawl_api_key');
SET pageperfect.api_key = 'sk-alice';
SET pageperfect.crawl_allow_private = on;
SELECT * FROM pageperfect.secrets;
SELECT * FROM pageperfect.cron_secrets;
RESET ROLE;

INSERT INTO pageperfect.pages (url, owner) VALUES ('https://a.example/', 'pp_alice'), ('https://b.example/', 'pp_bob');
INSERT INTO pageperfect.jobs (url, owner, page_id)
SELECT url, owner, id FROM pageperfect.pages;
INSERT INTO pageperfect.job_events (job_id, event) SELECT id, 'created' FROM pageperfect.jobs;
INSERT INTO pageperfect.job (schedule, command, username, jobname)
VALUES ('* * * * *', 'SELECT 1', 'pp_alice', 'alice-job'), ('* * * * *', 'SELECT 2', 'pp_bob', 'bob-job');
INSERT INTO pageperfect.job_run_details (jobid, username, status) SELECT jobid, username, 'succeeded' FROM pageperfect.job;

SET ROLE pp_alice;
SELECT url, owner FROM pageperfect.jobs;
SELECT url, status FROM pageperfect.v_job_status;
SELECT count(*) AS events FROM pageperfect.job_events;
SELECT url FROM pageperfect.pages;
SELECT jobname, username FROM cron.job;
SELECT username, status FROM cron.job_run_details;
UPDATE pageperfect.jobs SET status = 'dead';
DELETE FROM pageperfect.jobs;
SET ROLE pp_bob;
SELECT url, owner FROM pageperfect.jobs;
SELECT jobname FROM cron.job;
RESET ROLE;
SELECT count(*) AS all_jobs_seen_by_superuser FROM pageperfect.jobs;

DELETE FROM pageperfect.job_run_details;
DELETE FROM pageperfect.job;
DELETE FROM pageperfect.jobs;
DELETE FROM pageperfect.pages;
REVOKE USAGE ON SCHEMA cron FROM pp_alice, pp_bob;
DROP ROLE pp_alice;
DROP ROLE pp_bob;
