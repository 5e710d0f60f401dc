-- Work a caller can size is bounded and cancellable: the error names the limit, a cancel or
-- statement_timeout stops it promptly, and the server keeps serving.
\set VERBOSITY terse
-- 100,000 identical vectors would need 10^10 neighbour entries.
SELECT pageperfect.dbscan_cosine(array_fill(1::real, ARRAY[100000]), 1, 2.0);
-- 5,000 identical vectors: 25 million neighbour entries, past the cap.
SELECT pageperfect.dbscan_cosine(array_fill(1::real, ARRAY[5000]), 1, 0.3);
-- 20,000 random 64-dimension vectors take seconds; statement_timeout stops the call within it.
CREATE TEMP TABLE random_vectors AS
    SELECT ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 20000 * 64)) AS flat;
SELECT clock_timestamp() AS before \gset
SET statement_timeout = '200ms';
SELECT cardinality(pageperfect.dbscan_cosine(flat, 64)) FROM random_vectors;
RESET statement_timeout;
SELECT clock_timestamp() - :'before'::timestamptz < interval '2 seconds' AS cancelled_promptly;
-- A tenth of the vectors, without the timeout, clusters as usual.
SELECT cardinality(pageperfect.dbscan_cosine(flat[1:2000 * 64], 64)) AS labels FROM random_vectors;
SELECT 1 AS still_serving;
-- A cron command longer than pageperfect.max_command_bytes (1 MB) is refused however it comes:
-- one huge command used to make every scheduler tick fail, so that no job of anyone started.
SELECT cron.schedule('huge', '0 0 1 1 *', 'SELECT 1 --' || repeat('x', 16 * 1024 * 1024));
SELECT cron.schedule('fits', '0 0 1 1 *', 'SELECT 1 --' || repeat('x', 1000)) > 0 AS scheduled;
SELECT cron.alter_job(jobid, command => 'SELECT 1 --' || repeat('x', 2 * 1024 * 1024)) FROM cron.job WHERE jobname = 'fits';
INSERT INTO pageperfect.job (schedule, command) VALUES ('0 0 1 1 *', repeat('x', 1024 * 1024 + 1));
SELECT jobname, octet_length(command) FROM cron.job WHERE jobname IN ('huge', 'fits');
-- A superuser may raise the limit.
SET pageperfect.max_command_bytes = 3000000;
SELECT cron.alter_job(jobid, command => 'SELECT 1 --' || repeat('x', 2 * 1024 * 1024)) FROM cron.job WHERE jobname = 'fits';
RESET pageperfect.max_command_bytes;
SELECT jobname, octet_length(command) FROM cron.job WHERE jobname = 'fits';
SELECT cron.unschedule('fits');
-- How long a net.http_* request may take is bounded by a setting.
SELECT net.http_get('https://example.com/', timeout_milliseconds => 400000);
SHOW pageperfect.http_max_timeout_ms;
-- A reader waiting in read_with_poll is cancellable: statement_timeout ends a 10-second wait.
SELECT pageperfect.create_queue('waiting');
SELECT clock_timestamp() AS before_wait \gset
SET statement_timeout = '200ms';
SELECT count(*) FROM pageperfect.read_with_poll('waiting', 30, 1, 10, 5000);
RESET statement_timeout;
SELECT clock_timestamp() - :'before_wait'::timestamptz < interval '2 seconds' AS cancelled_promptly;
SELECT pageperfect.drop_queue('waiting');
-- Link suggestions compare every paragraph of the owner's other pages with up to 100 topics:
-- 100 topics against 20,000 paragraphs of 256 dimensions take seconds, and statement_timeout
-- stops the call between batches of paragraphs.
INSERT INTO pageperfect.pages (url, owner) SELECT 'https://big.example/' || n, 'postgres' FROM generate_series(0, 20) n;
INSERT INTO pageperfect.keyword_clusters (page_id, label, queries, query_impressions, centroid)
SELECT p.id, n, ARRAY['topic ' || n], '{1}', array_fill(1::real, ARRAY[256])
  FROM pageperfect.pages p, generate_series(0, 99) n WHERE p.url = 'https://big.example/0';
INSERT INTO pageperfect.page_embeddings (page_id, position, kind, tag, content, text_hash, embedding, provider, model)
SELECT p.id, n, 'paragraph', 'p', 'paragraph ' || n, 'h', array_fill(1::real, ARRAY[256]), 'local', 'big'
  FROM pageperfect.pages p, generate_series(1, 1000) n WHERE p.url LIKE 'https://big.example/_%' AND p.url <> 'https://big.example/0';
SELECT clock_timestamp() AS before_links \gset
SET statement_timeout = '200ms';
SELECT count(*) FROM pageperfect.link_suggestions('https://big.example/0');
RESET statement_timeout;
SELECT clock_timestamp() - :'before_links'::timestamptz < interval '2 seconds' AS cancelled_promptly;
DELETE FROM pageperfect.pages WHERE url LIKE 'https://big.example/%';
SELECT 1 AS still_serving;
