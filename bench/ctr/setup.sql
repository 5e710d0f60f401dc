-- CTR-fit benchmark (scripts/bench.sh), run with psql -v rows=N: N Search Console rows over the
-- last 20 days (50 sites' worth of pages and queries), positions 1 to 50, clicks drawn around a
-- known curve ctr(p) = 1 / (1 + exp(-(-0.6 - 0.3 p))), so both fits have something to find.
SELECT setseed(0.42);
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT current_date - 1 - (i % 20), 'sc-domain:bench',
       'https://bench.example/page/' || (i / 20) % 5000, 'query ' || (i / 20) / 5000,
       floor(imp * (1 / (1 + exp(0.6 + 0.3 * pos))) + random()), imp, pos
  FROM (SELECT i, 1 + floor(random() * 500)::int AS imp, round((1 + random() * 49)::numeric, 1)::float8 AS pos
          FROM generate_series(0, :rows - 1) AS i) rows;
ANALYZE pageperfect.gsc_page_query_daily;
