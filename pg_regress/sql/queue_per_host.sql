-- Polite crawling: a stage with a per_host_limit (submit_crawl: one at a time per host) offers
-- its work host by host, each host no sooner than its delay after its last start, so a thousand
-- pages of one site do not go out at once nor hold up the other sites behind them.
SELECT stage, concurrency, per_host_limit FROM pageperfect.stage_config WHERE per_host_limit IS NOT NULL;
SELECT u AS url, pageperfect.url_host(u) AS host
  FROM (VALUES ('https://User:pw@Shop.Example.COM:8443/a?b'), ('http://127.0.0.2:8080/'), ('http://[::1]/x'), ('not a url')) v (u);

-- Five pages of one site, two of another, one of a third (crawl-only jobs of one owner).
UPDATE pageperfect.parameters SET value = '10' WHERE name = 'max_jobs_per_owner';
SELECT count(pageperfect.enqueue_job('https://big.example/p' || n, ARRAY['submit_crawl'])) AS big FROM generate_series(1, 5) n;
SELECT count(pageperfect.enqueue_job('https://Small.Example/p' || n, ARRAY['submit_crawl'])) AS small FROM generate_series(1, 2) n;
SELECT pageperfect.enqueue_job('https://other.example/', ARRAY['submit_crawl']) IS NOT NULL AS other;
SELECT host, count(*) FROM pageperfect.job_stages WHERE stage = 'submit_crawl' AND status = 'queued' GROUP BY host ORDER BY host;
SELECT * FROM pageperfect.hosts_with_work('submit_crawl', 10) AS host;
SELECT * FROM pageperfect.hosts_with_work('submit_crawl', 2) AS bounded;
-- One page of each host is offered, the first of each.
SELECT j.url FROM pageperfect.claim_candidates(64) c JOIN pageperfect.jobs j ON j.id = c.job_id ORDER BY j.url;

-- A claimed crawl holds its host: the next page of big.example waits until it ends.
SELECT s.msg_id AS big_msg FROM pageperfect.job_stages s JOIN pageperfect.jobs j ON j.id = s.job_id
 WHERE j.url = 'https://big.example/p1' \gset
SELECT url FROM pageperfect.claim_stages(ARRAY[:big_msg]);
SELECT host, crawl_delay_seconds, next_start_at <= clock_timestamp() AS may_start FROM pageperfect.host_politeness;
SELECT j.url FROM pageperfect.claim_candidates(64) c JOIN pageperfect.jobs j ON j.id = c.job_id ORDER BY j.url;
-- Two at a time per host: big.example offers one more beside the one it runs.
UPDATE pageperfect.stage_config SET per_host_limit = 2 WHERE stage = 'submit_crawl';
SELECT j.url FROM pageperfect.claim_candidates(64) c JOIN pageperfect.jobs j ON j.id = c.job_id ORDER BY j.url;
UPDATE pageperfect.stage_config SET per_host_limit = 1 WHERE stage = 'submit_crawl';
-- The stage's concurrency still bounds the whole: one slot left, one page offered.
UPDATE pageperfect.stage_config SET concurrency = 2 WHERE stage = 'submit_crawl';
SELECT count(*) AS offered_with_one_free_slot FROM pageperfect.claim_candidates(64);
UPDATE pageperfect.stage_config SET concurrency = 4 WHERE stage = 'submit_crawl';

-- Delays: the minimum between two starts, a site's Crawl-delay when longer, and its cap.
SELECT pageperfect.host_delay(NULL) AS no_delay, pageperfect.host_delay(5) AS crawl_delay_5, pageperfect.host_delay(3600) AS capped;
UPDATE pageperfect.parameters SET value = '1500' WHERE name = 'crawl_min_delay_ms';
SELECT pageperfect.host_delay(NULL) AS minimum, pageperfect.host_delay(0.5) AS minimum_wins, pageperfect.host_delay(5) AS crawl_delay_wins;
UPDATE pageperfect.parameters SET value = '0' WHERE name = 'crawl_min_delay_ms';
-- A crawl of small.example read "Crawl-delay: 5": its next page waits five seconds from now,
-- and the workers know to look again then.
SELECT pageperfect.note_crawl_delay('small.example', 5);
SELECT host, crawl_delay_seconds,
       next_start_at BETWEEN clock_timestamp() + interval '4 s' AND clock_timestamp() + interval '5 s' AS in_five_seconds
  FROM pageperfect.host_politeness WHERE host = 'small.example';
SELECT j.url FROM pageperfect.claim_candidates(64) c JOIN pageperfect.jobs j ON j.id = c.job_id ORDER BY j.url;
SELECT pageperfect.next_pipeline_wakeup() BETWEEN clock_timestamp() AND clock_timestamp() + interval '5 s' AS wakes_when_the_delay_ends;
-- Later claims of the host wait its Crawl-delay from their start.
UPDATE pageperfect.host_politeness SET next_start_at = clock_timestamp() WHERE host = 'small.example';
SELECT s.msg_id AS small_msg FROM pageperfect.job_stages s JOIN pageperfect.jobs j ON j.id = s.job_id
 WHERE j.url = 'https://Small.Example/p1' \gset
SELECT url FROM pageperfect.claim_stages(ARRAY[:small_msg]);
SELECT next_start_at > clock_timestamp() + interval '4 s' AS waits_its_crawl_delay FROM pageperfect.host_politeness WHERE host = 'small.example';

-- Roles can neither read nor move a host's delay.
CREATE ROLE polite_mallory IN ROLE pageperfect_user;
SET ROLE polite_mallory;
SELECT * FROM pageperfect.host_politeness;
UPDATE pageperfect.host_politeness SET next_start_at = now();
SELECT pageperfect.note_crawl_delay('small.example', 0);
RESET ROLE;
DROP ROLE polite_mallory;

-- Clean up for the files after this one.
SELECT count(pageperfect.cancel_job(id)) AS cancelled FROM pageperfect.jobs WHERE url ~ '^https://(big|Small|other)\.[Ee]xample/';
DELETE FROM pageperfect.jobs WHERE url ~ '^https://(big|Small|other)\.[Ee]xample/';
DELETE FROM pageperfect.host_politeness;
UPDATE pageperfect.parameters SET value = '2' WHERE name = 'max_jobs_per_owner';
