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
