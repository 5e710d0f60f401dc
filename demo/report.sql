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

\echo 'Content decay (pageperfect.content_decay): clicks lost against the page''s best 28 days of the past 16 months'
SELECT regexp_replace(page, '^https?://[^/]+', '') AS page, round(clicks_lost) AS clicks_lost,
       round(lost_to_demand) AS to_demand, round(lost_to_position) AS to_position, round(lost_other) AS other,
       clicks_best, clicks_now, round(position_best::numeric, 1) AS pos_best, round(position_now::numeric, 1) AS pos_now,
       best_window_start, top_queries -> 0 ->> 'query' AS worst_query
  FROM pageperfect.content_decay('sc-domain:brewbetter.example');

\echo 'Keyword cannibalization (pageperfect.cannibalization): query clusters two pages compete for'
SELECT query_cluster, regexp_replace(page, '^https?://[^/]+', '') AS page, impressions, clicks,
       round(share::numeric, 2) AS share, round(position::numeric, 1) AS position,
       cluster_clicks, round(single_page_clicks) AS one_strong_page
  FROM pageperfect.cannibalization('sc-domain:brewbetter.example');

\echo 'Internal links to add (pageperfect.link_suggestions) for the iced coffee guide, which no page links to'
SELECT regexp_replace(s.source_page, '^https?://[^/]+', '') AS link_from, left(s.paragraph, 70) AS in_paragraph,
       s.anchor_text, s.anchor_in_text, s.is_gap, round(s.similarity::numeric, 2) AS similarity
  FROM pageperfect.pages p, pageperfect.link_suggestions(p.url, 3) s
 WHERE p.url LIKE '%/guides/iced-coffee.html';

\echo 'Content scores (pageperfect.content_score) and what the latest draft would make of them'
SELECT regexp_replace(p.url, '^https?://[^/]+', '') AS page, s.score, round(s.coverage::numeric, 2) AS coverage,
       round(s.opportunity::numeric, 2) AS opportunity, round(s.ctr::numeric, 2) AS ctr, round(s.freshness::numeric, 2) AS freshness,
       d.score_before AS draft_before, d.score_after AS draft_after
  FROM pageperfect.pages p
 CROSS JOIN LATERAL pageperfect.content_score(p.url) s
  LEFT JOIN LATERAL (SELECT score_before, score_after FROM pageperfect.rewrite_drafts d
                      WHERE d.page_id = p.id ORDER BY d.created_at DESC LIMIT 1) d ON true
 WHERE p.status_code = 200 ORDER BY s.score;
