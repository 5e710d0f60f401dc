-- pgmq 1.13's schema for pgmq's own clients, over pageperfect's queues: the calls pgmq's Rust
-- and Python clients make, with their named arguments, and what they read back.
\set VERBOSITY terse
SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS arguments, pg_catalog.format_type(p.prorettype, NULL) AS returns, p.proretset AS setof
  FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace ORDER BY 1, 2;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'pgmq.message_record'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'pgmq.metrics_result'::regclass AND attnum > 0 ORDER BY attnum;

SELECT pgmq.create(queue_name=>'orders_pgmq');
SELECT pgmq.create(queue_name=>'orders_pgmq');                      -- again: nothing happens
SELECT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'orders_pgmq'::text) AS in_meta;
SELECT queue_name, is_partitioned, is_unlogged FROM pgmq.list_queues();
SELECT * FROM pgmq.send(queue_name=>'orders_pgmq'::text, msg=>'{"n": 1}'::jsonb) AS first \gset
SELECT (SELECT * FROM pgmq.send(queue_name=>'orders_pgmq'::text, msg=>'{"n": 2}'::jsonb, headers=>'{"trace": "t2"}'::jsonb, delay=>0::int)) = :first + 1 AS next_id;
SELECT count(*) AS sent FROM pgmq.send_batch(queue_name=>'orders_pgmq'::text, msgs=>ARRAY['{"n": 3}', '{"n": 4}']::jsonb[],
                                             headers=>ARRAY['{"trace": "t3"}', NULL]::jsonb[], delay=>0::integer);
-- Delayed by seconds or to a time: not visible yet.
SELECT count(*) AS delayed FROM pgmq.send(queue_name=>'orders_pgmq'::text, msg=>'{"n": 5}'::jsonb, delay=>60::integer);
SELECT count(*) AS delayed FROM pgmq.send(queue_name=>'orders_pgmq'::text, msg=>'{"n": 6}'::jsonb, delay=>now() + interval '1 hour');
-- read: 7 columns, read_ct counted, last_read_at set, vt ahead; conditional filters by containment.
SELECT message, headers, read_ct, last_read_at IS NOT NULL AS read_now, vt > now() + interval '25 s' AS hidden_30s
  FROM pgmq.read(queue_name=>'orders_pgmq'::text, vt=>30::integer, qty=>2::integer);
SELECT message FROM pgmq.read(queue_name=>'orders_pgmq'::text, vt=>30, qty=>5, conditional=>'{"n": 4}'::jsonb);
SELECT count(*) AS nothing_visible FROM pgmq.read_with_poll(queue_name=>'orders_pgmq'::text, vt=>30::integer, qty=>1::integer,
                                                            max_poll_seconds=>1::integer, poll_interval_ms=>100::integer);
-- set_vt by seconds and to a time, one id or many: visible again, read_ct unchanged.
SELECT message, read_ct, vt <= clock_timestamp() AS visible
  FROM pgmq.set_vt(queue_name=>'orders_pgmq'::text, msg_ids=>ARRAY[:first, :first + 1]::bigint[], vt=>0::integer) ORDER BY msg_id;
SELECT message FROM pgmq.set_vt(queue_name=>'orders_pgmq'::text, msg_id=>:first::bigint, vt=>now() - interval '1 minute');
SELECT message, read_ct FROM pgmq.pop(queue_name=>'orders_pgmq'::text, qty=>1::integer);
SELECT * FROM pgmq.archive(queue_name=>'orders_pgmq'::text, msg_id=>(:first + 1)::bigint);
SELECT archive = :first + 2 AS only_the_one_still_there FROM pgmq.archive(queue_name=>'orders_pgmq'::text, msg_ids=>ARRAY[:first + 1, :first + 2]::bigint[]);
SELECT * FROM pgmq.delete(queue_name=>'orders_pgmq'::text, msg_id=>(:first + 3)::bigint);
SELECT deleted = :first + 4 AS only_the_one_still_there FROM pgmq.delete(queue_name=>'orders_pgmq'::text, msg_ids=>ARRAY[:first + 3, :first + 4]::bigint[]) AS deleted;
SELECT headers FROM pageperfect.queue_archive WHERE queue_name = 'orders_pgmq' ORDER BY msg_id;
SELECT queue_name, queue_length, total_messages, queue_visible_length, default_partition_length FROM pgmq.metrics(queue_name=>'orders_pgmq');
SELECT queue_name, queue_length FROM pgmq.metrics_all();
SELECT * FROM pgmq.purge_queue(queue_name=>'orders_pgmq'::text);

-- pgmq's messages for what it refuses.
SELECT pgmq.create(repeat('q', 48));
SELECT pgmq.send_batch('orders_pgmq', ARRAY[]::jsonb[]);
SELECT pgmq.send_batch('orders_pgmq', ARRAY['{}', '{}']::jsonb[], ARRAY['{}']::jsonb[]);
SELECT pgmq.create_partitioned('orders_part');
SELECT pgmq.read('no_such_queue', 30, 1);
-- pgmq's SQLSTATE for a missing queue (undefined_table), which clients match on.
DO $$
BEGIN
    PERFORM pgmq.send('no_such_queue', '{}');
EXCEPTION WHEN undefined_table THEN
    RAISE NOTICE 'undefined_table, as pgmq';
END
$$;

-- A role sees and uses only its own queues, under pgmq's names as under pageperfect's.
CREATE ROLE pgmq_mallory IN ROLE pageperfect_user;
SET ROLE pgmq_mallory;
SELECT count(*) AS mallory_sees FROM pgmq.meta;
SELECT count(*) AS mallory_lists FROM pgmq.list_queues();
SELECT pgmq.send('orders_pgmq', '{"evil": true}');
SELECT pgmq.read('orders_pgmq', 30, 1);
SELECT pgmq.purge_queue('orders_pgmq');
SELECT pgmq.drop_queue('orders_pgmq');
SELECT pgmq.create('mallory_q');
SELECT count(*) AS own_queue FROM pgmq.send('mallory_q', '{"mine": true}');
RESET ROLE;
SELECT queue_name, owner FROM pageperfect.queues WHERE queue_name IN ('orders_pgmq', 'mallory_q') ORDER BY 1;

SELECT pgmq.drop_queue(queue_name=>'orders_pgmq');
SELECT pgmq.drop_queue(queue_name=>'orders_pgmq');
SELECT pgmq.drop_queue('mallory_q');
DROP ROLE pgmq_mallory;
