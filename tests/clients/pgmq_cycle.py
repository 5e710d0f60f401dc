"""pgmq's own Python client (PyPI `pgmq`, 1.1.x) against pageperfect's pgmq schema: the
send/read/pop/archive/delete/set_vt/metrics/purge cycle, unchanged. Run by
tests/tests/pgmq_clients.rs with PGMQ_DSN set; prints "ok" when every check passed."""
import datetime
import os
import sys

from pgmq import PGMQueue

# pageperfect's pgmq is a schema, not an extension: the client must not create one.
queue = PGMQueue(conn_string=os.environ["PGMQ_DSN"], init_extension=False, pool_size=2)
name = "py_orders"


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


queue.create_queue(name)
check(any(q.queue_name == name for q in queue.list_queues()), "list_queues shows the queue")

first = queue.send(name, {"n": 1})
second = queue.send(name, {"n": 2}, headers={"trace": "abc"})
batch = queue.send_batch(name, [{"n": 3}, {"n": 4}])
check(second == first + 1 and batch == [first + 2, first + 3], f"ids {first} {second} {batch}")
later = queue.send(name, {"n": 5}, delay=60)
at = queue.send(name, {"n": 6}, tz=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))

message = queue.read(name, vt=30)
check(message.msg_id == first and message.message == {"n": 1} and message.read_ct == 1, f"read {message}")
check(message.last_read_at is not None and message.headers is None, f"read's last_read_at and headers {message}")
with_headers = queue.read(name, vt=30)
check(with_headers.headers == {"trace": "abc"}, f"headers {with_headers}")
conditional = queue.read(name, vt=30, qty=5, conditional={"n": 4})
check([m.message for m in conditional] == [{"n": 4}], f"conditional read {conditional}")
polled = queue.read_with_poll(name, vt=30, qty=5, max_poll_seconds=1, poll_interval_ms=100)
check([m.message for m in polled] == [{"n": 3}], f"read_with_poll {polled}")

again = queue.set_vt(name, first, 0)
check(again.msg_id == first and again.read_ct == 1, f"set_vt {again}")
moved = queue.set_vt(name, second, datetime.datetime.now(datetime.timezone.utc))
check(moved.msg_id == second, f"set_vt to a time {moved}")
popped = queue.pop(name)
check(popped.msg_id == first, f"pop {popped}")

check(queue.archive(name, second) is True, "archive one")
check(queue.archive_batch(name, [first + 2, 999999]) == [first + 2], "archive_batch returns what it moved")
check(queue.delete(name, first + 3) is True, "delete one")
check(queue.delete(name, first + 3) is False, "delete a deleted message")
check(queue.delete_batch(name, [later, 999999]) == [later], "delete_batch returns what it deleted")

metrics = queue.metrics(name)
check(metrics.queue_name == name and metrics.queue_length == 1 and metrics.total_messages == 6, f"metrics {metrics}")
check(any(m.queue_name == name for m in queue.metrics_all()), "metrics_all")
check(queue.purge(name) == 1, "purge counts the message left")
check(queue.drop_queue(name) is True, "drop_queue")
check(queue.drop_queue(name) is False, "drop_queue of a dropped queue")
print("ok")
