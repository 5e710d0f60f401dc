//! pgmq's own clients against pageperfect's `pgmq` schema, unchanged: the `pgmq` crate's
//! `PGMQueueExt` (sqlx) as a role of `pageperfect_user`, and the Python client (`pgmq` on PyPI,
//! run by tests/clients/pgmq_cycle.py) as a superuser. Each runs the send / read / pop / archive /
//! delete / set_vt / metrics / purge cycle and checks what comes back; neither calls `init()`
//! (it would `CREATE EXTENSION pgmq`, and pgmq is a schema here).

use pageperfect_it::Cluster;
use pgmq::PGMQueueExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order {
    n: i64,
}

#[test]
fn pgmqs_rust_client_runs_its_whole_cycle_as_an_ordinary_role() {
    let (cluster, mut admin) = Cluster::with_extension("pgmq-rust", &[]);
    admin.batch_execute("CREATE ROLE app LOGIN IN ROLE pageperfect_user").unwrap();
    // The client's URL parser wants a password (the test cluster trusts loopback anyway).
    let url = format!("postgres://app:app@127.0.0.1:{}/postgres", cluster.port);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let queue = PGMQueueExt::new(url, 2).await.expect("connect");
        assert!(queue.create("orders").await.unwrap(), "a new queue");
        assert!(!queue.create("orders").await.unwrap(), "create of an existing queue says so (pgmq.meta)");
        let listed = queue.list_queues().await.unwrap().unwrap_or_default();
        assert_eq!(listed.iter().map(|q| q.queue_name.as_str()).collect::<Vec<_>>(), ["orders"]);

        let first = queue.send("orders", &Order { n: 1 }).await.unwrap();
        let second = queue.send_delay_with_headers("orders", &Order { n: 2 }, Some(&json!({"trace": "t2"})), 0).await.unwrap();
        let batch = queue.send_batch("orders", &[Order { n: 3 }, Order { n: 4 }]).await.unwrap();
        assert_eq!((second, batch.clone()), (first + 1, vec![first + 2, first + 3]));
        let delayed = queue.send_delay("orders", &Order { n: 5 }, 60).await.unwrap();

        let read = queue.read::<Order>("orders", 30).await.unwrap().expect("a message");
        assert_eq!((read.msg_id, read.read_ct, read.message), (first, 1, Order { n: 1 }));
        assert!(read.vt > read.enqueued_at + chrono::Duration::seconds(25), "hidden for 30 s");
        let polled = queue
            .read_batch_with_poll::<Order>("orders", 30, 10, Some(Duration::from_secs(1)), Some(Duration::from_millis(100)))
            .await
            .unwrap()
            .unwrap_or_default();
        assert_eq!(polled.iter().map(|m| m.msg_id).collect::<Vec<_>>(), [second, first + 2, first + 3]);
        // Nothing visible: the poll waits its second and returns nothing.
        let none = queue.read_batch_with_poll::<Order>("orders", 30, 1, Some(Duration::from_secs(1)), None).await.unwrap();
        assert!(none.unwrap_or_default().is_empty());

        let visible_again = queue.set_vt::<Order>("orders", first, 0).await.unwrap();
        assert_eq!((visible_again.msg_id, visible_again.read_ct), (first, 1));
        let popped = queue.pop::<Order>("orders").await.unwrap().expect("the visible one");
        assert_eq!(popped.message, Order { n: 1 });

        assert!(queue.archive("orders", second).await.unwrap());
        assert_eq!(queue.archive_batch("orders", &[second, first + 2]).await.unwrap(), 1, "only what was still there");
        assert!(queue.delete("orders", first + 3).await.unwrap());
        assert!(!queue.delete("orders", first + 3).await.unwrap());
        assert_eq!(queue.delete_batch("orders", &[delayed, 424242]).await.unwrap(), 1);

        queue.send("orders", &Order { n: 6 }).await.unwrap();
        let metrics = queue.metrics("orders").await.unwrap();
        assert_eq!((metrics.queue_name.as_str(), metrics.queue_length, metrics.total_messages, metrics.queue_visible_length), ("orders", 1, 6, 1));
        assert_eq!(queue.metrics_all().await.unwrap().len(), 1, "only the role's own queues");
        assert_eq!(queue.purge_queue("orders").await.unwrap(), 1);
        queue.drop_queue("orders").await.unwrap();
        assert!(queue.list_queues().await.unwrap().unwrap_or_default().is_empty());
    });
    // Everything went through pageperfect's queue: the archive has the archived messages.
    let archived: i64 = admin.query_one("SELECT count(*) FROM pageperfect.queue_archive", &[]).unwrap().get(0);
    assert_eq!(archived, 0, "drop_queue removes the archive too");
}

#[test]
fn pgmqs_python_client_runs_its_whole_cycle() {
    let (cluster, _admin) = Cluster::with_extension("pgmq-python", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/pgmq_cycle.py");
    let output = Command::new("python3")
        .arg(script)
        .env("PGMQ_DSN", format!("postgresql://postgres@127.0.0.1:{}/postgres", cluster.port))
        .output()
        .expect("python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.trim_end().ends_with("ok"), "pgmq_cycle.py failed:\n{stdout}\n{stderr}");
}
