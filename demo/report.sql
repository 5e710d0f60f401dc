-- The demo's report: run it again any time with
--   psql -h 127.0.0.1 -p 28816 -U postgres postgres -f demo/report.sql
\pset null '—'
\echo 'Pages: what was crawled and what came out of it'
SELECT regexp_replace(coalesce(p.final_url, p.url), '^https?://[^/]+', '') AS page,
       p.title, p.status_code AS http,
       (SELECT count(*) FROM pageperfect.page_embeddings e WHERE e.page_id = p.id) AS fragments,
       (SELECT count(*) FROM pageperfect.keyword_clusters c WHERE c.page_id = p.id) AS clusters,
       (SELECT count(*) FROM pageperfect.rewrite_recommendations r WHERE r.page_id = p.id) AS gaps
  FROM pageperfect.pages p ORDER BY p.url;

\echo 'Top content gaps: topics searchers ask about that the page does not cover'
SELECT regexp_replace(p.url, '^https?://[^/]+', '') AS page, r.rank,
       array_to_string(r.queries[1:3], ' · ') AS queries, r.impressions,
       round(r.similarity::numeric, 2) AS similarity, round(r.opportunity_score::numeric) AS opportunity,
       round(r.estimated_clicks_gain::numeric) AS clicks_gained
  FROM pageperfect.rewrite_recommendations r JOIN pageperfect.pages p ON p.id = r.page_id
 ORDER BY r.opportunity_score DESC LIMIT 8;

\echo 'The draft for the biggest opportunity'
SELECT regexp_replace(p.url, '^https?://[^/]+', '') AS page, d.provider, d.model, d.latency_ms,
       left(d.draft, 900) AS draft
  FROM pageperfect.rewrite_drafts d
  JOIN pageperfect.pages p ON p.id = d.page_id
  JOIN pageperfect.rewrite_recommendations r ON r.id = d.recommendation_id
 ORDER BY r.opportunity_score DESC, d.created_at DESC LIMIT 1 \gx

\echo 'How each stage did (pageperfect.execution_insights)'
SELECT stage, attempts, failed, round(success_rate::numeric, 2) AS success_rate,
       round(latency_p50_ms::numeric) AS p50_ms, round(latency_p95_ms::numeric) AS p95_ms
  FROM pageperfect.execution_insights(now() - interval '1 hour', now()) ORDER BY stage = '*', stage;
