-- backup: what pg_dump keeps. pg_dump writes an extension's objects as one CREATE EXTENSION and
-- leaves out their rows, unless a table or sequence is marked with pg_extension_config_dump:
-- then its rows (a sequence's position) are dumped too and restored after CREATE EXTENSION.
-- Every table that holds what users entered, paid for or the pipeline learned is marked, with
-- the sequence behind each of its identity columns, so restored ids never meet new ones.
-- docs/operations.md, "Backup and restore", says how to dump and restore.

-- Rows that CREATE EXTENSION seeds (parameters, stage_config, pageperfect's own queues) are
-- dumped whole, since users change them (a fitted CTR curve, a stage's limits, a paused queue).
-- Restoring one must neither fail on the seeded row with its key nor leave the seed in place:
-- a restored row replaces it. Outside restores nothing inserts such rows (the settings are
-- changed with UPDATE, and queue names starting with pageperfect_ are refused to roles).
CREATE FUNCTION pageperfect.replace_seeded_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The UPDATE is built from the table's own column names, each quote_ident()ed, and the key
-- column the trigger names: @plpgsql_check_options: security_warnings = off
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
