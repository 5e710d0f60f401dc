-- gsc API: ingest_gsc() queues the fetch of a window of Search Console data; the `ingest_gsc`
-- stage (src/gsc/ingest.rs) runs it on a pipeline worker, so the calls to Google happen outside
-- any transaction and a failed attempt is retried with backoff like every stage.

INSERT INTO pageperfect.stage_config (stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds)
VALUES ('ingest_gsc', NULL, 4, 60, 1, 1800);

-- Queues the ingestion of Search Console data for `sites` (NULL: every property the service
-- account can read) and returns the job that does it. Without `for_date`: the last
-- gsc_window_days days up to `until` (default yesterday), every earlier day still not final, and
-- for a site never fetched a backfill of gsc_backfill_days; with it: that one day. Each site's
-- outcome lands in gsc_ingestions, each day's state in gsc_days.
CREATE FUNCTION pageperfect.ingest_gsc(for_date date DEFAULT NULL, sites text[] DEFAULT NULL, until date DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    api_base text := coalesce(nullif(current_setting('pageperfect.gsc_api_url', true), ''),
                              'https://searchconsole.googleapis.com/webmasters/v3');
    last_day date := coalesce(for_date, until, current_date - 1);
    setting jsonb := (SELECT pg_catalog.jsonb_object_agg(p.name, p.value) FROM pageperfect.parameters p
                       WHERE p.name IN ('gsc_window_days', 'gsc_backfill_days', 'gsc_data_state'));
    options jsonb;
    job uuid;
BEGIN
    IF last_day >= current_date THEN
        RAISE EXCEPTION 'the days to ingest must be before today (got %)', last_day
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Search Console has data for a day only after it has ended.';
    END IF;
    IF coalesce(setting ->> 'gsc_data_state', 'all') NOT IN ('all', 'final') THEN
        RAISE EXCEPTION 'parameter gsc_data_state must be all or final (got %)', setting ->> 'gsc_data_state'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF sites IS NOT NULL AND (pg_catalog.cardinality(sites) = 0
                              OR EXISTS (SELECT FROM pg_catalog.unnest(sites) s WHERE pg_catalog.btrim(coalesce(s, '')) = '')) THEN
        RAISE EXCEPTION 'sites must be NULL (every property the service account can read) or a list of Search Console properties, none empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Properties look like ''https://example.com/'' or ''sc-domain:example.com''.';
    END IF;
    IF NOT EXISTS (SELECT FROM pageperfect.secrets s WHERE s.name = 'gsc_credentials') THEN
        RAISE EXCEPTION 'no Search Console credentials are stored'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Store the service account''s JSON key with SELECT pageperfect.set_gsc_credentials(''{...}'').';
    END IF;
    options := pg_catalog.jsonb_build_object(
        'for_date', for_date, 'until', last_day, 'sites', pg_catalog.to_jsonb(sites),
        'window_days', coalesce((setting ->> 'gsc_window_days')::int, 4),
        'backfill_days', coalesce((setting ->> 'gsc_backfill_days')::int, 486),
        'data_state', coalesce(setting ->> 'gsc_data_state', 'all'));
    job := pageperfect.create_job(CURRENT_USER, api_base || '/sites', ARRAY['ingest_gsc'], options, 0, '{}', false);
    RETURN pg_catalog.jsonb_build_object('job_id', job, 'for_date', for_date, 'until', last_day, 'sites', pg_catalog.to_jsonb(sites));
END
$$;

-- The Search Console properties whose data the caller may use (its own and its roles'), for
-- pickers such as pageperfect-web's insights page.
CREATE FUNCTION pageperfect.search_console_sites()
RETURNS TABLE (site text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT o.site FROM pageperfect.gsc_site_owners o ORDER BY 1
$$;
