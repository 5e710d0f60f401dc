-- pgbench script, pageperfect side, batch size 1: send one message, read one, delete it.
-- Three statements, three transactions (autocommit), as a producer and a consumer would run them.
-- Needs -M prepared (or extended): :id is passed as a parameter.
SELECT pageperfect.send('bench', bench_message(1));
SELECT msg_id AS id FROM pageperfect.read('bench', 30, 1) \gset
SELECT pageperfect.delete('bench', :id::bigint);
