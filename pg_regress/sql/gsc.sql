-- Search Console data and secrets as users see them: CSV import (and its errors), the CTR
-- curve (defaults, a fit, too little data), cron secrets, and who may do what.
SELECT pageperfect.import_gsc_csv('sc-domain:example.com', $csv$Date,Page,Query,Clicks,Impressions,CTR,Position
2026-11-01,https://example.com/brew,"french press ratio",12,"1,200",1%,8.5
2026-11-01,https://example.com/brew,"coffee ""bloom"", explained",3,300,1%,12
2026-11-02,https://example.com/brew,french press ratio,20,"1,000",2%,6.5
$csv$) AS loaded;
SELECT date, query, clicks, impressions, round(ctr::numeric, 3) AS ctr, position
  FROM pageperfect.gsc_page_query_daily ORDER BY date, query;
SELECT page, query, clicks, impressions, round(position::numeric, 2) AS position, window_start, window_end
  FROM pageperfect.gsc_keywords ORDER BY query;

-- Errors name what is wrong and where.
SELECT pageperfect.import_gsc_csv('sc-domain:example.com', E'Top queries,Clicks,Impressions\nshoes,1,10\n');
SELECT pageperfect.import_gsc_csv('sc-domain:example.com', E'Date,Page,Query,Clicks\n2026-11-01,/a,q,1\n');
SELECT pageperfect.import_gsc_csv('sc-domain:example.com', E'Date,Page,Query,Clicks,Impressions\n2026-11-01,/a,q,1,ten\n');
SELECT pageperfect.import_gsc_csv('sc-domain:example.com', E'Date,Page,Query,Clicks,Impressions\n2026-11-01,/a,q,11,10\n');
SELECT pageperfect.import_gsc_csv(' ', E'Date,Page,Query,Clicks,Impressions\n');

-- The built-in curve until a fit; the fit needs data at two positions at least.
SELECT round(pageperfect.expected_ctr(1)::numeric, 4) AS top, round(pageperfect.expected_ctr(10)::numeric, 4) AS tenth;
SELECT pageperfect.expected_ctr(0);
SELECT * FROM pageperfect.recalibrate_ctr(0);
SELECT * FROM pageperfect.recalibrate_ctr(1);
UPDATE pageperfect.gsc_page_query_daily SET date = date + (current_date - date '2026-11-03');
SELECT round(alpha::numeric, 4) AS alpha, round(beta::numeric, 4) AS beta, rows_used FROM pageperfect.recalibrate_ctr(7);
SELECT lookback_days, rows_used, impressions, clicks FROM pageperfect.ctr_fits;
SELECT round(pageperfect.expected_ctr(8.5)::numeric, 4) AS at_8_5;

-- Cron secrets: verified, never stored.
SELECT pageperfect.set_cron_secret('webhook', 'short');
SELECT pageperfect.set_cron_secret('webhook', 's3cret-token-for-the-webhook');
SELECT pageperfect.verify_cron_secret('webhook', 's3cret-token-for-the-webhook') AS right_secret,
       pageperfect.verify_cron_secret('webhook', 'S3cret-token-for-the-webhook') AS wrong_secret,
       pageperfect.verify_cron_secret('nothing', 's3cret-token-for-the-webhook') AS unknown_name;
SELECT name, algorithm, iterations, length(salt) AS salt_bytes, length(hash) AS hash_bytes FROM pageperfect.cron_secrets;

-- Search Console API ingestion needs a service-account key, checked when it is stored.
SELECT pageperfect.ingest_gsc();
SELECT pageperfect.set_gsc_credentials('not json');
SELECT pageperfect.set_gsc_credentials('{"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com"}');
SELECT pageperfect.set_gsc_credentials('{"type": "service_account", "client_email": "a@b", "token_uri": "https://oauth2.googleapis.com/token", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}');
SELECT pageperfect.ingest_gsc(date '2999-01-01');
SELECT pageperfect.ingest_gsc(sites => ARRAY['https://example.com/', '']);

-- A pageperfect_user may check a secret, but not set one, load data or refit the curve.
CREATE ROLE pp_carol LOGIN IN ROLE pageperfect_user;
SET ROLE pp_carol;
SELECT pageperfect.verify_cron_secret('webhook', 's3cret-token-for-the-webhook') AS carol_verifies;
SELECT pageperfect.set_cron_secret('webhook', 'carol-wants-this-one');
SELECT pageperfect.import_gsc_csv('s', E'Date,Page,Query,Clicks,Impressions\n');
SELECT * FROM pageperfect.recalibrate_ctr();
SELECT * FROM pageperfect.cron_secrets;
SELECT pageperfect.set_gsc_credentials('{}');
SELECT pageperfect.ingest_gsc();
SELECT * FROM pageperfect.secrets;
RESET ROLE;
DROP ROLE pp_carol;
