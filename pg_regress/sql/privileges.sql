-- A hostile role cannot gain rights it was not given: it plants operators, functions, a cast and
-- pg_temp domains that would make it superuser if any pageperfect code ran them, then calls every
-- function a role can execute with its schema first in search_path. It also cannot write the
-- tables, enqueue system stages, reach private addresses, store secrets, or touch another
-- tenant's data.
\set VERBOSITY terse
CREATE ROLE mallory LOGIN IN ROLE pageperfect_user;
CREATE ROLE alice LOGIN IN ROLE pageperfect_user;
CREATE SCHEMA mal AUTHORIZATION mallory;
GRANT USAGE ON SCHEMA cron, net TO mallory, alice;

-- Every function of the extension has a pinned search_path but the queue's hot path, which
-- schema-qualifies everything instead (called below with a hostile search_path).
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pageperfect'
 WHERE NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
 ORDER BY p.oid::regprocedure::text COLLATE "C";

-- What a role may execute (anything else is for superusers).
SELECT p.oid::regprocedure AS executable_by_pageperfect_user
  FROM pg_proc p
 WHERE p.pronamespace IN ('pageperfect'::regnamespace, 'cron'::regnamespace, 'net'::regnamespace)
   AND has_function_privilege('mallory', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text COLLATE "C";

-- Alice's data, made through the API.
SET ROLE alice;
SELECT cron.schedule('alice-job', '0 0 * * *', 'SELECT 1') > 0 AS alice_scheduled;
SELECT pageperfect.create_queue('alice_q');
SELECT pageperfect.send('alice_q', '{"secret": "alice"}') > 0 AS alice_sent;
SELECT pageperfect.run_workflow('https://alice.example/') IS NOT NULL AS alice_workflow;
SELECT net.http_get('https://alice.example/hook') > 0 AS alice_request;
RESET ROLE;
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
VALUES (current_date - 1, 'sc-domain:alice.example', 'https://alice.example/', 'alice query', 3, 30, 2.5);
INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:alice.example', 'alice');
SELECT jobid AS alice_jobid FROM pageperfect.job WHERE jobname = 'alice-job' \gset
SELECT id AS alice_request FROM pageperfect.http_requests WHERE owner = 'alice' \gset
SELECT id AS alice_workflow FROM pageperfect.jobs WHERE owner = 'alice' \gset
INSERT INTO pageperfect.job_run_details (jobid, database, username, command, status, due_time)
SELECT jobid, database, username, command, 'starting', now() + interval '1 hour' FROM pageperfect.job WHERE jobid = :alice_jobid
RETURNING runid AS alice_run \gset
-- A backlog sample of every queue, alice_q's among them (queue_backlog_history).
SELECT pageperfect.trigger_metrics_collection() ? 'metrics_written' AS sampled;

SET ROLE mallory;
-- The traps: each would make mallory superuser if pageperfect code ran it.
CREATE TABLE mal.ran (what text);
CREATE FUNCTION mal.trap(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mal.ran VALUES (what);
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
END $$;
CREATE FUNCTION mal.eq_bigint(bigint, bigint) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('= bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR mal.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mal.eq_bigint);
CREATE FUNCTION mal.eq_text(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('= text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR mal.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mal.eq_text);
CREATE FUNCTION mal.eq_name(name, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('= name'); RETURN $1::text OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR mal.= (LEFTARG = name, RIGHTARG = text, FUNCTION = mal.eq_name);
CREATE FUNCTION mal.eq_uuid(uuid, uuid) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('= uuid'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR mal.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = mal.eq_uuid);
CREATE FUNCTION mal.le_timestamptz(timestamptz, timestamptz) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('<= timestamptz'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
CREATE OPERATOR mal.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mal.le_timestamptz);
CREATE FUNCTION mal.lt_int(int, int) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('< int'); RETURN $1 OPERATOR(pg_catalog.<) $2; END $$;
CREATE OPERATOR mal.< (LEFTARG = int, RIGHTARG = int, FUNCTION = mal.lt_int);
CREATE FUNCTION mal.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION mal.count(uuid) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('count(uuid)'); RETURN 0; END $$;
CREATE FUNCTION mal.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('jsonb_build_object'); RETURN '{}'; END $$;
-- Types named as the ones the extension's code uses (those not spelled as SQL keywords), in
-- pg_temp, which is searched first for types unless a search_path names it later.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['text', 'jsonb', 'timestamptz', 'refcursor', 'uuid', 'name', 'interval', 'bytea',
                             'float8', 'int4', 'int8', 'numeric', 'bool', 'regclass'] LOOP
        EXECUTE format('CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (mal.trap(%L) IS NULL)', t, t, 'pg_temp.' || t);
    END LOOP;
END $$;
-- A cast mallory may make (from her own type) to a type the extension uses.
CREATE TYPE mal.pay AS (amount int);
CREATE FUNCTION mal.pay_to_text(mal.pay) RETURNS pg_catalog.text LANGUAGE plpgsql AS $$
BEGIN PERFORM mal.trap('cast'); RETURN 'x'; END $$;
CREATE CAST (mal.pay AS pg_catalog.text) WITH FUNCTION mal.pay_to_text(mal.pay) AS IMPLICIT;
SET search_path = mal, pg_temp, pg_catalog;

-- The exploit of the issue, and the same through every function a role can execute.
SELECT cron.schedule('mjob', '0 0 * * *', 'SELECT 1') AS j \gset
SELECT cron.unschedule(:j);
SELECT cron.schedule('mjob', '0 0 * * *', 'SELECT 1') > 0 AS rescheduled;
SELECT cron.unschedule('mjob');
SELECT cron.schedule('mjob', '0 0 * * *', 'SELECT 1') > 0 AS rescheduled;
SELECT success FROM pageperfect.toggle_cron_job('mjob', false);
SELECT jobid > 0 AS policy_set FROM pageperfect.alter_job_policy('mjob', max_attempts => 2);
SELECT pageperfect.run_job_now('mjob') > 0 AS run_started;
SELECT count(*) FROM pageperfect.manage_cron_jobs();
SELECT total_jobs FROM pageperfect.get_cron_job_status();
SELECT count(*) > 0 AS health FROM pageperfect.get_scheduler_health();
SELECT pageperfect.extension_version_advice() IS NULL AS library_serves_this_version;
SELECT count(*) > 0 AS workers FROM pageperfect.worker_health();
SELECT pageperfect.next_runs('0 0 * * *', '2026-01-01 00:00+00', 2);
SELECT pageperfect.validate_schedule('* * * * *');
SELECT pageperfect.create_queue('mal_q');
SELECT pageperfect.send('mal_q', '{"n": 1}') > 0 AS sent;
SELECT count(*) FROM pageperfect.send_batch('mal_q', ARRAY['{"n": 2}'::pg_catalog.jsonb, '{"n": 3}']);
SELECT count(*) FROM pageperfect.read('mal_q', 0, 1);
SELECT count(*) FROM pageperfect.read('mal_q', 0, 20);
SELECT count(*) FROM pageperfect.read_with_poll('mal_q', 30, 1, 1, 10);
SELECT count(*) FROM pageperfect.pop('mal_q');
SELECT pageperfect.delete('mal_q', (SELECT max(msg_id) FROM pageperfect.queue_messages));
SELECT count(*) FROM pageperfect.delete('mal_q', ARRAY[0::bigint]);
SELECT pageperfect.archive('mal_q', 0::bigint);
SELECT count(*) FROM pageperfect.archive('mal_q', ARRAY[0::bigint]);
SELECT count(*) FROM pageperfect.set_vt('mal_q', 0, 5);
SELECT queue_length FROM pageperfect.metrics('mal_q');
SELECT count(*) FROM pageperfect.metrics_all();
SELECT queue_name FROM pageperfect.list_queues();
SELECT pageperfect.purge_queue('mal_q') >= 0 AS purged;
SELECT pageperfect.drop_queue('mal_q');
SELECT pageperfect.run_workflow('https://mallory.example/') IS NOT NULL AS workflow;
SELECT pageperfect.enqueue_job('https://mallory.example/2', ARRAY['submit_crawl']) IS NOT NULL AS job;
SELECT pageperfect.process_urls() >= 0 AS processed;
SELECT count(*) > 0 AS stages FROM pageperfect.processor_status();
SELECT count(*) > 0 AS insights FROM pageperfect.execution_insights();
SELECT pageperfect.retry_dead_letter(1);
SELECT count(*) FROM pageperfect.job_runs('mjob');
SELECT count(*) FROM pageperfect.list_dead_letters();
SELECT pageperfect.workflow_detail(pageperfect.run_workflow('https://mallory.example/')) ->> 'url' AS workflow_url;
SELECT count(*) > 0 AS samples FROM pageperfect.metric_samples();
SELECT pg_catalog.cardinality(pageperfect.cron_duration_buckets()) AS buckets;
SELECT count(*) AS alerts FROM pageperfect.open_alerts;
SELECT count(*) AS backlog_samples FROM pageperfect.queue_backlog_history;
SELECT pageperfect.dbscan_cosine(ARRAY[1, 0, 1, 0, 0, 1]::real[], 2);
SELECT round(pageperfect.expected_ctr(1)::numeric, 3) > 0 AS ctr;
SELECT count(*) AS decayed FROM pageperfect.content_decay('sc-domain:alice.example', window_length => '1 day');
SELECT count(*) AS competing FROM pageperfect.cannibalization('sc-domain:alice.example', 0);
SELECT count(*) FROM pageperfect.link_suggestions('https://alice.example/');
SELECT score FROM pageperfect.content_score('https://alice.example/');
SELECT count(*) AS alice_sites_seen FROM pageperfect.search_console_sites() WHERE site LIKE '%alice%';
SELECT count(*) AS alice_scores_seen FROM pageperfect.latest_content_scores() WHERE url LIKE '%alice%';
SELECT net.http_get('https://mallory.example/') > 0 AS requested;
SELECT net.http_post('https://mallory.example/', '{}') > 0 AS posted;
SELECT net.http_delete('https://mallory.example/') > 0 AS deleted;
SELECT (net.http_collect_response(1)).status;
SELECT pageperfect.queue_http_request('GET', 'https://mallory.example/', '{}', '{}', NULL, 1000) > 0 AS queued;
SELECT pageperfect.queue_must_allow('alice_q', 'alice');
SELECT cron.unschedule('mjob');
RESET search_path;

-- The queue's hot path, which is not pinned, called directly by a superuser whose search_path
-- has mallory's schema first: nothing planted runs as the superuser either.
RESET ROLE;
SET search_path = mal, pg_temp, pg_catalog;
SELECT pageperfect.create_queue_for('postgres', 'su_q');
SELECT pageperfect.send_for('postgres', 'su_q', '{"n": 1}', 0) > 0 AS sent;
SELECT count(*) FROM pageperfect.send_batch_for('postgres', 'su_q', ARRAY['{"n": 2}'::pg_catalog.jsonb, '{"n": 3}'], 0);
SELECT count(*) FROM pageperfect.read_for('postgres', 'su_q', 0, 1);
SELECT count(*) FROM pageperfect.read_for('postgres', 'su_q', 0, 20);
SELECT count(*) FROM pageperfect.pop_for('postgres', 'su_q', 1);
SELECT count(*) FROM pageperfect.set_vt_for('postgres', 'su_q', (SELECT max(msg_id) FROM pageperfect.queue_messages), 0);
SELECT pageperfect.archive_for('postgres', 'su_q', (SELECT max(msg_id) FROM pageperfect.queue_messages));
SELECT count(*) FROM pageperfect.archive_batch_for('postgres', 'su_q', ARRAY[0::bigint]);
SELECT pageperfect.delete_for('postgres', 'su_q', (SELECT max(msg_id) FROM pageperfect.queue_messages));
SELECT count(*) FROM pageperfect.delete_batch_for('postgres', 'su_q', ARRAY[0::bigint]);
SELECT pageperfect.read_for('postgres', 'su_q', -1, 1);
SELECT pageperfect.read_for('postgres', 'su_q', 1, 0);
SELECT pageperfect.send_for('postgres', 'su_q', '{}', -1);
SELECT pageperfect.send_for('postgres', 'no_such_q', '{}', 0);
SELECT pageperfect.drop_queue_for('postgres', 'su_q');
RESET search_path;
SET ROLE mallory;

-- Nothing planted ran, and mallory is still no superuser.
SELECT what FROM mal.ran;
SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory';
-- The traps are live: mallory's own query with her path runs one (as herself).
SET search_path = mal, pg_catalog;
SELECT 1::bigint = 2::bigint AS control;
RESET search_path;
SELECT what AS ran_in_her_own_query FROM mal.ran;

-- Writes go through the API: no table takes a direct write, no sequence an id.
INSERT INTO pageperfect.queue_messages (queue_name, message) VALUES ('alice_q', '{}');
INSERT INTO pageperfect.queue_messages (msg_id, queue_name, message) OVERRIDING SYSTEM VALUE VALUES (999999, 'mal_q', '{}');
INSERT INTO pageperfect.http_requests (method, url, timeout_milliseconds) VALUES ('GET', 'http://127.0.0.1/', 1);
INSERT INTO pageperfect.jobs (url) VALUES ('https://mallory.example/');
-- Restores replace the rows CREATE EXTENSION seeded (sql/backup.sql); roles reach them neither
-- directly nor through the queue API.
INSERT INTO pageperfect.parameters (name, value) VALUES ('ctr_alpha', '5');
INSERT INTO pageperfect.stage_config (stage, max_attempts, retry_delay_seconds, concurrency, timeout_seconds) VALUES ('submit_crawl', 1, 0, 99, 1);
INSERT INTO pageperfect.queues (queue_name, owner) VALUES ('pageperfect_pipeline', 'mallory');
SELECT pageperfect.create_queue('pageperfect_pipeline');
SELECT pgmq.create('pageperfect_pipeline');
UPDATE pageperfect.jobs SET status = 'dead';
DELETE FROM cron.job_run_details;
SELECT nextval('pageperfect.queue_messages_msg_id_seq');
BEGIN;
LOCK TABLE cron.job_run_details IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
BEGIN;
LOCK TABLE pageperfect.queue_messages IN ROW EXCLUSIVE MODE;
ROLLBACK;
SELECT msg_id FROM pageperfect.queue_messages FOR UPDATE;

-- Only pipeline stages can be enqueued: an alert or an ingestion runs with the service's rights.
SELECT pageperfect.enqueue_job('https://hooks.example/', ARRAY['notify_alert']);
SELECT pageperfect.enqueue_job('https://www.googleapis.com/', ARRAY['ingest_gsc']);

-- The SSRF guard: loopback, link-local (cloud metadata) and private addresses are refused, and
-- nothing is stored.
SELECT net.http_get('http://169.254.169.254/latest/meta-data/');
SELECT net.http_get('http://127.0.0.1:5432/');
SELECT net.http_post('http://[::ffff:0:7f00:1]/', '{}');
SELECT net.http_get('http://localhost/');
SELECT net.http_get('https://mallory.example/', timeout_milliseconds => 3600000);
SELECT count(*) AS mallory_requests_to_private_addresses FROM pageperfect.http_requests
 WHERE url ~ '(127\.0\.0\.1|169\.254|localhost|::ffff)';

-- One DBSCAN takes at most the cores a superuser allows.
SET pageperfect.dbscan_threads = 16;

-- Secrets come only from the server's configuration.
RESET ROLE;
ALTER ROLE mallory SET pageperfect.api_key = 'sk-stored-where-everyone-reads';
ALTER DATABASE pageperfect_regress SET pageperfect.crawl_api_key = 'k';
CREATE FUNCTION mal.keyed() RETURNS int LANGUAGE sql SET pageperfect.api_key = 'sk-x' AS 'SELECT 1';
SELECT count(*) AS stored_secret_settings FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%api_key%';
SET pageperfect.api_key = 'a superuser''s session may';
RESET pageperfect.api_key;

-- Alice's data stays hers: mallory neither sees nor changes it.
SET ROLE mallory;
SELECT count(*) AS alice_jobs_seen FROM pageperfect.jobs WHERE owner = 'alice';
SELECT count(*) AS alice_cron_jobs_seen FROM cron.job WHERE username = 'alice';
SELECT count(*) AS alice_messages_seen FROM pageperfect.queue_messages;
SELECT count(*) AS alice_requests_seen FROM pageperfect.http_requests WHERE owner = 'alice';
SELECT count(*) AS alice_gsc_rows_seen FROM pageperfect.gsc_page_query_daily;
SELECT count(*) AS alice_samples_seen FROM pageperfect.metric_samples()
 WHERE labels ->> 'job' = 'alice-job' OR labels ->> 'queue' = 'alice_q' OR labels ->> 'jobid' = :'alice_jobid';
SELECT count(*) AS alice_backlog_seen FROM pageperfect.queue_backlog_history WHERE queue_name = 'alice_q';
SELECT count(*) AS alice_dead_letters_seen FROM pageperfect.list_dead_letters(true, 1000) WHERE url LIKE 'https://alice.example/%';
SELECT count(*) FROM pageperfect.read('alice_q', 30, 10);
SELECT pageperfect.send('alice_q', '{"from": "mallory"}');
SELECT pageperfect.purge_queue('alice_q');
SELECT pageperfect.drop_queue('alice_q');
SELECT pageperfect.create_queue('alice_q');
SELECT * FROM pageperfect.toggle_cron_job('alice-job', false);
SELECT cron.unschedule('alice-job');
SELECT cron.unschedule(:alice_jobid);
SELECT * FROM net.http_collect_response(:alice_request);
SELECT pageperfect.pause_queue('alice_q');
-- (The ids differ from run to run: each refusal prints only its SQLSTATE.)
SELECT set_config('test.alice_workflow', :'alice_workflow', false) IS NOT NULL AND
       set_config('test.alice_run', :'alice_run', false) IS NOT NULL AS noted;
DO $$
DECLARE
    attempt pg_catalog.text;
BEGIN
    FOREACH attempt IN ARRAY ARRAY[
        'SELECT pageperfect.cancel_job(pg_catalog.current_setting(''test.alice_workflow'')::pg_catalog.uuid)',
        'SELECT pageperfect.cancel_run(pg_catalog.current_setting(''test.alice_run'')::pg_catalog.int8)',
        'SELECT pageperfect.workflow_detail(pg_catalog.current_setting(''test.alice_workflow'')::pg_catalog.uuid)',
        'SELECT pageperfect.job_runs(''alice-job'')']::pg_catalog.text[]
    LOOP
        BEGIN
            EXECUTE attempt;
            RAISE NOTICE 'allowed: %', attempt;
        EXCEPTION WHEN no_data_found THEN
            RAISE NOTICE 'refused (%): %', SQLSTATE, pg_catalog.split_part(attempt, '(', 1);
        END;
    END LOOP;
END
$$;
SELECT * FROM pageperfect.alter_job_policy('alice-job', overlap => 'cancel_previous');
SELECT pageperfect.pause_stage('submit_crawl');
RESET ROLE;
SELECT count(*) AS alice_messages_left FROM pageperfect.queue_messages WHERE queue_name = 'alice_q';
SELECT active AS alice_job_active FROM cron.job WHERE jobname = 'alice-job';
SELECT paused AS alice_queue_paused FROM pageperfect.queues WHERE queue_name = 'alice_q';
SELECT status AS alice_workflow_status FROM pageperfect.jobs WHERE id = :'alice_workflow';
SELECT status AS alice_run_status FROM pageperfect.job_run_details WHERE runid = :alice_run;
SELECT count(*) > 0 AS alice_backlog_sampled FROM pageperfect.queue_backlog_history WHERE queue_name = 'alice_q';
SELECT overlap AS alice_job_overlap FROM pageperfect.job WHERE jobid = :alice_jobid;
SELECT count(*) AS paused_stages FROM pageperfect.stage_config WHERE paused;

-- Alice sees her Search Console rows; mallory's workflow clusters none of them.
SET ROLE alice;
SELECT query FROM pageperfect.gsc_page_query_daily;
SELECT site FROM pageperfect.search_console_sites();
SELECT count(*) AS alice_sees_her_messages FROM pageperfect.queue_messages;
RESET ROLE;

-- Clean up for the files after this one.
SELECT cron.unschedule(jobid) FROM cron.job WHERE username IN ('alice', 'mallory');
DELETE FROM pageperfect.jobs WHERE owner IN ('alice', 'mallory');
DELETE FROM pageperfect.http_requests WHERE owner IN ('alice', 'mallory');
SELECT pageperfect.drop_queue('alice_q');
DELETE FROM pageperfect.gsc_site_owners;
DELETE FROM pageperfect.gsc_page_query_daily WHERE site = 'sc-domain:alice.example';
DROP CAST (mal.pay AS pg_catalog.text);
DROP DOMAIN pg_temp.text, pg_temp.jsonb, pg_temp.timestamptz, pg_temp.refcursor, pg_temp.uuid, pg_temp.name,
    pg_temp.interval, pg_temp.bytea, pg_temp.float8, pg_temp.int4, pg_temp.int8, pg_temp.numeric, pg_temp.bool,
    pg_temp.regclass;
DROP SCHEMA mal CASCADE;
ALTER ROLE mallory RESET ALL;
REVOKE USAGE ON SCHEMA cron, net FROM mallory, alice;
DROP ROLE mallory;
DROP ROLE alice;
