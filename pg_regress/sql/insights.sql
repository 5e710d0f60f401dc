-- SEO insights on a fixed fixture: a site (roast.example) with a decaying page, two pages
-- competing for one query cluster, and an orphan page that no other page links to; another
-- owner's page and site beside it. Vectors have three dimensions: milk, cold brew, pour-over.
CREATE ROLE ins_alice LOGIN IN ROLE pageperfect_user;
CREATE ROLE ins_bob LOGIN IN ROLE pageperfect_user;
-- A known CTR curve and gap threshold for the expected figures (restored at the end).
CREATE TEMP TABLE saved_parameters AS
    SELECT name, value FROM pageperfect.parameters WHERE name IN ('ctr_alpha', 'ctr_beta', 'gap_similarity_threshold');
UPDATE pageperfect.parameters SET value = CASE name WHEN 'ctr_alpha' THEN '-0.51' WHEN 'ctr_beta' THEN '-0.34' ELSE '0.7' END::jsonb
 WHERE name IN ('ctr_alpha', 'ctr_beta', 'gap_similarity_threshold');
INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:roast.example', 'ins_alice'), ('sc-domain:bob.example', 'ins_bob');

INSERT INTO pageperfect.pages (url, owner, final_url, status_code, title, fetched_at, content_changed_at, stated_modified_at)
SELECT 'https://roast.example/' || slug, owner, 'https://roast.example/' || slug, 200, title, now(), now(), now() - interval '365 days'
  FROM (VALUES ('decaying', 'ins_alice', 'Pour-over basics'), ('cold-brew', 'ins_alice', 'Cold brew'),
               ('iced-coffee', 'ins_alice', 'Iced coffee'), ('orphan', 'ins_alice', 'Frothing milk'),
               ('latte', 'ins_alice', 'Latte'), ('cappuccino', 'ins_alice', 'Cappuccino'),
               ('bob-milk', 'ins_bob', 'Bob''s milk page')) AS p (slug, owner, title);
CREATE TEMP TABLE page_ids AS SELECT id, substr(url, 23) AS slug FROM pageperfect.pages WHERE url LIKE 'https://roast.example/%';

INSERT INTO pageperfect.page_embeddings (page_id, position, kind, tag, content, text_hash, embedding, provider, model)
SELECT i.id, e.position, e.kind, e.tag, e.content, md5(e.content), e.embedding, 'local', 'fixture'
  FROM (VALUES
        ('orphan', 0, 'heading', 'h1', 'Frothing milk at home', '{1, 0, 0}'::real[]),
        ('orphan', 1, 'paragraph', 'p', 'A frother or a whisk both work.', '{0.9, 0.1, 0}'),
        ('decaying', 0, 'paragraph', 'p', 'Pour the water slowly; warm milk is optional.', '{0.6, 0, 0.8}'),
        ('latte', 0, 'paragraph', 'p', 'Frothing milk for a latte takes a steam wand.', '{0.95, 0, 0.3}'),
        ('latte', 1, 'paragraph', 'p', 'Serve it over ice in summer.', '{0, 1, 0}'),
        ('cappuccino', 0, 'paragraph', 'p', 'Cappuccino foam is frothed milk.', '{1, 0, 0}'),
        ('cold-brew', 0, 'paragraph', 'p', 'Steep the grounds overnight.', '{0, 1, 0}'),
        ('bob-milk', 0, 'paragraph', 'p', 'Bob froths milk too.', '{1, 0, 0}')) AS e (slug, position, kind, tag, content, embedding)
  JOIN page_ids i USING (slug);

-- The cappuccino page already links to the orphan (and the latte page to the cold brew page).
INSERT INTO pageperfect.page_links (page_id, target_url, anchor_text)
SELECT i.id, l.target, l.anchor FROM (VALUES ('cappuccino', 'https://roast.example/orphan', 'frothing milk'),
                                              ('latte', 'https://roast.example/cold-brew', 'cold brew')) AS l (slug, target, anchor)
  JOIN page_ids i USING (slug);

INSERT INTO pageperfect.keyword_clusters (page_id, label, queries, query_impressions, impressions, clicks, position, centroid)
SELECT i.id, c.label, c.queries, c.query_impressions, c.impressions, c.clicks, c.position, c.centroid
  FROM (VALUES ('orphan', 0, '{frothing milk, milk frother}'::text[], '{200, 80}'::bigint[], 280, 14, 5.0, '{1, 0, 0}'::real[]),
               ('orphan', 1, '{steaming milk temperature}', '{140}', 140, 0, 15.0, '{0.3, 0, 0.95}'),
               ('cold-brew', 0, '{cold brew concentrate, cold brew ratio}', '{5600, 1400}', 7000, 336, 4.6, '{0, 1, 0}'),
               ('iced-coffee', 0, '{iced coffee recipe}', '{4200}', 4200, 420, 2.0, '{0, 0.7, 0.7}'),
               ('iced-coffee', 1, '{cold brew ratio}', '{2800}', 2800, 84, 9.0, '{0, 1, 0}'))
       AS c (slug, label, queries, query_impressions, impressions, clicks, position, centroid)
  JOIN page_ids i USING (slug);
-- The orphan's second cluster is a gap (the gap analysis found it).
INSERT INTO pageperfect.rewrite_recommendations (page_id, cluster_id, rank, queries, impressions, similarity, opportunity_score)
SELECT c.page_id, c.id, 1, c.queries, c.impressions, 0.3, 98 FROM pageperfect.keyword_clusters c WHERE c.queries = '{steaming milk temperature}';

-- Search Console: 84 days ending 2026-11-30, three 28-day windows. The decaying page's best
-- window is the oldest; now "pour over ratio" has half the searches and "v60 technique" fell
-- from position 3 to 6. Cold brew and iced coffee share "cold brew ratio" in the last 28 days.
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT day, 'sc-domain:roast.example', 'https://roast.example/' || q.slug, q.query,
       CASE WHEN day > '2026-11-02' THEN q.clicks_now WHEN day > '2026-10-05' THEN q.clicks_mid ELSE q.clicks_best END,
       CASE WHEN day > '2026-11-02' THEN q.impressions_now ELSE q.impressions_best END,
       CASE WHEN day > '2026-11-02' THEN q.position_now ELSE q.position_best END
  FROM generate_series(date '2026-09-08', date '2026-11-30', interval '1 day') AS day,
       (VALUES ('decaying', 'pour over ratio', 10, 8, 5, 100, 50, 3.0, 3.0),
               ('decaying', 'v60 technique', 10, 9, 4, 100, 100, 3.0, 6.0),
               ('latte', 'latte at home', 2, 2, 2, 40, 40, 5.0, 5.0))
       AS q (slug, query, clicks_best, clicks_mid, clicks_now, impressions_best, impressions_now, position_best, position_now);
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT day, 'sc-domain:roast.example', 'https://roast.example/' || q.slug, q.query, q.clicks, q.impressions, q.position
  FROM generate_series(date '2026-11-03', date '2026-11-30', interval '1 day') AS day,
       (VALUES ('cold-brew', 'cold brew concentrate', 10, 200, 4.0), ('cold-brew', 'cold brew ratio', 2, 50, 7.0),
               ('iced-coffee', 'cold brew ratio', 3, 100, 9.0), ('iced-coffee', 'iced coffee recipe', 15, 150, 2.0),
               ('orphan', 'frothing milk', 1, 10, 5.0)) AS q (slug, query, clicks, impressions, position);
-- Bob's site: a page that lost everything. Only bob sees it.
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT day, 'sc-domain:bob.example', 'https://bob.example/secret', 'bob secret', CASE WHEN day > '2026-11-02' THEN 0 ELSE 9 END, 90, 2
  FROM generate_series(date '2026-09-08', date '2026-11-30', interval '1 day') AS day;

SET ROLE ins_alice;
-- Content decay: the decaying page lost 308 clicks against its best window: 140 of "pour over
-- ratio" to demand (half the searches), 168 of "v60 technique" mostly to position (3 -> 6, the
-- curve keeps 41% of the CTR) and the rest otherwise. The other pages did not decay.
SELECT page, round(clicks_lost::numeric, 1) AS lost, round(lost_to_demand::numeric, 1) AS demand,
       round(lost_to_position::numeric, 1) AS position, round(lost_other::numeric, 1) AS other,
       clicks_best, clicks_now, impressions_best, impressions_now,
       round(position_best::numeric, 2) AS pos_best, round(position_now::numeric, 2) AS pos_now,
       best_window_start, best_window_end
  FROM pageperfect.content_decay('sc-domain:roast.example');
SELECT jsonb_pretty(top_queries) FROM pageperfect.content_decay('sc-domain:roast.example', queries => 1);
-- A 14-day window compares the last 14 days with the best 14 of the past.
SELECT page, clicks_best, clicks_now, best_window_start, best_window_end
  FROM pageperfect.content_decay('sc-domain:roast.example', window_length => '14 days');
-- Bad windows are refused; a site without data, or another owner's, reports nothing.
SELECT * FROM pageperfect.content_decay('sc-domain:roast.example', window_length => '36 hours');
SELECT * FROM pageperfect.content_decay('sc-domain:roast.example', window_length => '1 year');
SELECT count(*) AS bobs FROM pageperfect.content_decay('sc-domain:bob.example');

-- Cannibalization: cold brew and iced coffee compete for the "cold brew concentrate / ratio"
-- cluster (joined through "cold brew ratio"); one strong page at position 4.6 would get more.
SELECT query_cluster, queries, regexp_replace(page, '^https://roast.example', '') AS page, impressions, clicks,
       round(share::numeric, 3) AS share, round(position::numeric, 2) AS position,
       cluster_impressions, cluster_clicks, round(single_page_clicks::numeric, 1) AS single_page_clicks
  FROM pageperfect.cannibalization('sc-domain:roast.example');
-- With a higher minimum share the iced coffee page (28.6%) no longer counts, so nothing competes.
SELECT count(*) FROM pageperfect.cannibalization('sc-domain:roast.example', min_share => 0.3);
SELECT * FROM pageperfect.cannibalization('sc-domain:roast.example', min_share => 0.9);
SELECT count(*) AS bobs FROM pageperfect.cannibalization('sc-domain:bob.example');

-- Link suggestions for the orphan: the decaying page (closest to its gap) and the latte page
-- (closest to its main topic, whose query it already uses); the cappuccino page links to it
-- already, the cold brew page is off topic, and bob's page is not alice's.
SELECT regexp_replace(source_page, '^https://roast.example', '') AS source, paragraph, topic, is_gap,
       anchor_text, anchor_in_text, round(similarity::numeric, 3) AS similarity
  FROM pageperfect.link_suggestions('https://roast.example/orphan');
SELECT regexp_replace(source_page, '^https://roast.example', '') AS source
  FROM pageperfect.link_suggestions('https://roast.example/orphan', 1);
SELECT count(*) FROM pageperfect.link_suggestions('https://roast.example/orphan', min_similarity => 0.99);
SELECT * FROM pageperfect.link_suggestions('https://roast.example/orphan', 0);
-- A page without keyword clusters is described by its headings: none here, so nothing to suggest.
SELECT count(*) FROM pageperfect.link_suggestions('https://roast.example/latte');
SELECT * FROM pageperfect.link_suggestions('https://roast.example/bob-milk');

-- The content score of the orphan: coverage (280 of 420 impressions covered, the gap at
-- 0.301 of 0.7), opportunity, CTR against the curve, freshness (a year old: 0.5).
SELECT score, round(coverage::numeric, 3) AS coverage, round(opportunity::numeric, 3) AS opportunity,
       round(ctr::numeric, 3) AS ctr, round(freshness::numeric, 3) AS freshness,
       details ->> 'clusters' AS clusters, details ->> 'covered_clusters' AS covered,
       details ->> 'impressions' AS impressions, details ->> 'clicks' AS clicks,
       round((details ->> 'expected_clicks')::numeric, 2) AS expected_clicks,
       round((details ->> 'clicks_gain_left')::numeric, 2) AS clicks_gain_left
  FROM pageperfect.content_score('https://roast.example/orphan');
SELECT * FROM pageperfect.content_score('https://roast.example/no-such-page');

-- Bob sees his own site's decay and his page, none of alice's.
SET ROLE ins_bob;
SELECT page, clicks_best, clicks_now FROM pageperfect.content_decay('sc-domain:bob.example');
SELECT count(*) AS alices FROM pageperfect.content_decay('sc-domain:roast.example');
SELECT count(*) AS alices FROM pageperfect.cannibalization('sc-domain:roast.example');
SELECT * FROM pageperfect.link_suggestions('https://roast.example/orphan');
SELECT * FROM pageperfect.content_score('https://roast.example/orphan');
SELECT score FROM pageperfect.content_score('https://roast.example/bob-milk');
RESET ROLE;
-- A superuser sees every page, but links are suggested from the target's owner's pages only.
SELECT regexp_replace(source_page, '^https://roast.example', '') AS source
  FROM pageperfect.link_suggestions('https://roast.example/orphan');

DELETE FROM pageperfect.pages WHERE url LIKE 'https://roast.example/%';
DELETE FROM pageperfect.gsc_page_query_daily WHERE site IN ('sc-domain:roast.example', 'sc-domain:bob.example');
DELETE FROM pageperfect.gsc_site_owners WHERE owner IN ('ins_alice', 'ins_bob');
UPDATE pageperfect.parameters p SET value = s.value FROM saved_parameters s WHERE s.name = p.name;
DROP ROLE ins_alice, ins_bob;
