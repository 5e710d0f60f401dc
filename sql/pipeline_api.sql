-- pipeline API: start the PagePerfect workflow for a URL, or for every page that is due.

-- One job that runs the whole pipeline for `url`, minus `skip_steps`; a step whose input is
-- unchanged since its last success is reused unless `force_update`. While the caller's workflow
-- for the same URL is queued or running, that one is returned instead of a second crawl
-- (`deduplicate => false` starts another anyway).
CREATE FUNCTION pageperfect.run_workflow(url text, skip_steps text[] DEFAULT '{}', force_update boolean DEFAULT false,
                                         priority int DEFAULT 0, deduplicate boolean DEFAULT true)
RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.enqueue_job(url, NULL, '{}'::jsonb, priority, skip_steps, force_update,
                                   CASE WHEN deduplicate THEN 'workflow ' || url END)
$$;

-- Starts the workflow for up to `lim` pages (the caller's pages and the pages Search Console
-- reports) that were never crawled or not within `older_than`, and have no job under way.
-- Returns how many it started.
CREATE FUNCTION pageperfect.process_urls(lim int DEFAULT 50, older_than interval DEFAULT '2 days')
RETURNS int
LANGUAGE sql VOLATILE AS $$
    WITH known AS (
        SELECT p.url, p.fetched_at FROM pageperfect.pages p
        UNION ALL
        SELECT DISTINCT k.page, NULL::timestamptz FROM pageperfect.gsc_keywords k
    ), candidates AS (
        SELECT known.url, max(known.fetched_at) AS fetched_at FROM known
         WHERE known.url ~* '^https?://' GROUP BY known.url
    ), due AS (
        SELECT c.url FROM candidates c
         WHERE (c.fetched_at IS NULL OR c.fetched_at < now() - older_than)
           AND NOT EXISTS (SELECT FROM pageperfect.jobs j
                            WHERE j.url = c.url AND j.status IN ('queued', 'processing', 'failed'))
         ORDER BY c.fetched_at NULLS FIRST, c.url
         LIMIT lim
    )
    SELECT count(pageperfect.run_workflow(due.url))::int FROM due
$$;

-- One workflow (the caller's job): its status, each stage with its attempts, timing and last
-- error, and the page's latest rewrite draft (with the content score before it and the score it
-- would reach), as one jsonb document. Raises when the caller has
-- no such job.
CREATE FUNCTION pageperfect.workflow_detail(job_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job pageperfect.jobs;
    result jsonb;
BEGIN
    SELECT * INTO job FROM pageperfect.jobs j WHERE j.id = workflow_detail.job_id;
    IF job.id IS NULL THEN
        RAISE EXCEPTION 'workflow % does not exist', job_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT jsonb_build_object(
               'job_id', job.id, 'url', job.url, 'status', job.status, 'stage', job.stage,
               'created_at', job.created_at, 'updated_at', job.updated_at,
               'stages', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                       'stage', s.stage, 'status', s.status, 'attempts', s.attempt_count,
                                       'started_at', s.started_at, 'completed_at', s.completed_at,
                                       'duration_seconds', extract(epoch FROM s.completed_at - s.started_at)::float8,
                                       'last_error', s.last_error) ORDER BY s.position)
                                     FROM pageperfect.job_stages s WHERE s.job_id = job.id), '[]'),
               'draft', (SELECT jsonb_build_object('id', d.id, 'provider', d.provider, 'model', d.model,
                                                   'created_at', d.created_at, 'text', d.draft,
                                                   'score_before', d.score_before, 'score_after', d.score_after)
                           FROM pageperfect.rewrite_drafts d
                          WHERE d.job_id = job.id OR (d.page_id = job.page_id AND job.page_id IS NOT NULL)
                          ORDER BY (d.job_id = job.id) DESC NULLS LAST, d.created_at DESC LIMIT 1))
      INTO result;
    RETURN result;
END
$$;

-- Each of the caller's pages with its latest content score and its latest draft's score before
-- and after, lowest score first (pageperfect-web's insights page).
CREATE FUNCTION pageperfect.latest_content_scores(max_rows int DEFAULT 50)
RETURNS TABLE (url text, score int, coverage float8, opportunity float8, ctr float8, freshness float8,
               created_at timestamptz, score_before int, score_after int)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM (SELECT DISTINCT ON (s.page_id) coalesce(p.final_url, p.url) AS url, s.score, s.coverage, s.opportunity,
                          s.ctr, s.freshness, s.created_at, d.score_before, d.score_after
                     FROM pageperfect.content_scores s JOIN pageperfect.pages p ON p.id = s.page_id
                     LEFT JOIN LATERAL (SELECT d.score_before, d.score_after FROM pageperfect.rewrite_drafts d
                                         WHERE d.page_id = s.page_id ORDER BY d.id DESC LIMIT 1) d ON true
                    ORDER BY s.page_id, s.id DESC) latest
     ORDER BY latest.score, latest.url
     LIMIT max_rows
$$;
