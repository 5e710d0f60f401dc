-- pageperfect 0.1.0 -> 0.2.0, run by ALTER EXTENSION pageperfect UPDATE.
--   * pg_dump keeps every table that holds user data, with its identity sequences, and a
--     restored seeded row replaces the one CREATE EXTENSION seeded (sql/backup.sql).
--   * get_scheduler_health() has a row 'extension' while the server's library does not serve the
--     database's SQL version, saying what to run (src/lifecycle.rs).
-- Written by hand; tests/tests/upgrade.rs proves that it gives the schema of a fresh 0.2.0
-- install and keeps every row. docs/operations.md says how to write the next one.
\echo Use "ALTER EXTENSION pageperfect UPDATE TO '0.2.0'" to load this file. \quit

-- src/lifecycle.rs, with finalize.sql's pinned search_path and grants.
CREATE FUNCTION pageperfect."extension_version_advice"() RETURNS TEXT
STRICT STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'extension_version_advice_wrapper';
ALTER FUNCTION pageperfect.extension_version_advice() SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION pageperfect.extension_version_advice() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pageperfect.extension_version_advice() TO pageperfect_user;

-- sql/scheduler_api.sql: the 'extension' row.
CREATE OR REPLACE FUNCTION pageperfect.get_scheduler_health()
RETURNS TABLE (component text, status text, last_run timestamptz, next_run timestamptz,
               error_count bigint, success_rate numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(m.job_name, 'job ' || m.jobid),
           CASE WHEN NOT m.active THEN 'inactive'
                WHEN m.last_status = 'failed' THEN 'failing'
                ELSE 'healthy' END,
           m.last_run, m.next_run, coalesce(s.failed, 0),
           round(100.0 * s.succeeded / nullif(s.succeeded + s.failed, 0), 1)
      FROM pageperfect.manage_cron_jobs() m
      LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
                                count(*) FILTER (WHERE d.status = 'failed') AS failed
                           FROM pageperfect.job_run_details d
                          WHERE d.jobid = m.jobid AND d.end_time > now() - interval '24 hours') s ON true
    UNION ALL
    SELECT h.component, h.status, h.last_heartbeat, NULL, NULL, NULL
      FROM pageperfect.worker_health() h
    UNION ALL
    -- Only while the server's library does not serve this database's SQL version: what to run.
    SELECT 'extension', a.advice, NULL, NULL, NULL, NULL
      FROM pageperfect.extension_version_advice() AS a (advice)
     WHERE a.advice IS NOT NULL
$$;

-- sql/backup.sql, as it stands in 0.2.0.
CREATE FUNCTION pageperfect.replace_seeded_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_column text := TG_ARGV[0];
    columns text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
      FROM pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    EXECUTE format('UPDATE %I.%I AS t SET (%s) = (SELECT %s FROM (SELECT ($1).*) AS n) WHERE t.%I = ($1).%I',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, columns, columns, key_column, key_column)
        USING NEW;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER replace_seeded_row BEFORE INSERT ON pageperfect.parameters
    FOR EACH ROW EXECUTE FUNCTION pageperfect.replace_seeded_row('name');
CREATE TRIGGER replace_seeded_row BEFORE INSERT ON pageperfect.stage_config
    FOR EACH ROW EXECUTE FUNCTION pageperfect.replace_seeded_row('stage');
CREATE TRIGGER replace_seeded_row BEFORE INSERT ON pageperfect.queues
    FOR EACH ROW WHEN (NEW.queue_name LIKE 'pageperfect\_%') EXECUTE FUNCTION pageperfect.replace_seeded_row('queue_name');

-- The tables pg_dump keeps, by module. Left out, on purpose, are what a running server rebuilds
-- by itself and a restored copy is better without:
--   workers          heartbeats of this server's worker processes (unlogged)
--   scheduler_state  the WAL timeline this server's scheduler last started on
--   robots_cache     robots.txt files, fetched again when they expire
--   host_politeness  when each host may be crawled next
-- Every other table must be in the list: CREATE EXTENSION (and the upgrade tests) fail otherwise.
DO $$
DECLARE
    kept text[] := ARRAY[
        -- bootstrap
        'parameters', 'secrets', 'cron_secrets',
        -- scheduler
        'job', 'job_run_details',
        -- queue and job engine
        'queues', 'queue_messages', 'queue_archive', 'queue_sent_counts', 'stage_config',
        'jobs', 'job_stages', 'payloads', 'job_events', 'dead_letters',
        -- pipeline
        'pages', 'page_links', 'page_embeddings', 'embedding_cache', 'keyword_clusters',
        'rewrite_recommendations', 'rewrite_drafts', 'content_scores',
        -- Search Console
        'gsc_page_query_daily', 'gsc_keywords', 'gsc_site_owners', 'gsc_ingestions', 'gsc_days', 'ctr_fits',
        -- HTTP
        'http_requests', 'http_responses',
        -- monitor
        'monitoring_alerts', 'metrics_data', 'health_checks', 'sweeper_logs', 'cleanup_logs'];
    left_out text[] := ARRAY['workers', 'scheduler_state', 'robots_cache', 'host_politeness'];
    undecided text;
    kept_table pg_catalog.regclass;
    identity_sequence pg_catalog.regclass;
BEGIN
    SELECT string_agg(c.relname, ', ') INTO undecided
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'pageperfect'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
       AND c.relname <> ALL (kept) AND c.relname <> ALL (left_out);
    IF undecided IS NOT NULL THEN
        RAISE EXCEPTION 'tables neither kept by pg_dump nor left out on purpose: %', undecided;
    END IF;
    FOR kept_table IN SELECT pg_catalog.format('pageperfect.%I', t)::pg_catalog.regclass FROM pg_catalog.unnest(kept) t LOOP
        PERFORM pg_catalog.pg_extension_config_dump(kept_table, '');
        FOR identity_sequence IN
            SELECT pg_catalog.pg_get_serial_sequence(kept_table::text, a.attname)::pg_catalog.regclass
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = kept_table AND a.attidentity <> '' AND NOT a.attisdropped
        LOOP
            PERFORM pg_catalog.pg_extension_config_dump(identity_sequence, '');
        END LOOP;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION pageperfect.replace_seeded_row() FROM PUBLIC;
