-- gsc API: ingest_gsc() queues the fetch of one day of Search Console data; the `ingest_gsc`
-- stage (src/gsc/ingest.rs) runs it on a pipeline worker, so the calls to Google happen outside
-- any transaction and a failed attempt is retried with backoff like every stage.

INSERT INTO pageperfect.stage_config (stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds)
VALUES ('ingest_gsc', NULL, 4, 60, 1, 1800);

-- Queues the ingestion of `for_date` for `sites` (NULL: every property the service account can
-- read) and returns the job that does it. Each site's outcome lands in gsc_ingestions.
CREATE FUNCTION pageperfect.ingest_gsc(for_date date DEFAULT current_date - 1, sites text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    api_base text := coalesce(nullif(current_setting('pageperfect.gsc_api_url', true), ''),
                              'https://searchconsole.googleapis.com/webmasters/v3');
    job uuid;
BEGIN
    IF for_date IS NULL OR for_date >= current_date THEN
        RAISE EXCEPTION 'for_date must be a day before today (got %)', coalesce(for_date::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Search Console has complete data for a day only after it has ended.';
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
    job := pageperfect.create_job(CURRENT_USER, api_base || '/sites', ARRAY['ingest_gsc'],
                                  pg_catalog.jsonb_build_object('for_date', for_date, 'sites', pg_catalog.to_jsonb(sites)),
                                  0, '{}', false);
    RETURN pg_catalog.jsonb_build_object('job_id', job, 'for_date', for_date, 'sites', pg_catalog.to_jsonb(sites));
END
$$;
