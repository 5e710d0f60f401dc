//! `bench-wakeup PORT`: how long a reader waiting for a message takes to get one after a send
//! commits. pageperfect's `read_with_poll` (woken by the committing send) beside the same wait as
//! pgmq's `read_with_poll` does it: read, and if nothing came, `pg_sleep` for the poll interval
//! (100 ms, pgmq's default) and read again, on a plain table in the same database. Each side
//! waits `ROUNDS` times; the send lands at a random moment of the baseline's poll cycle. Prints
//! p50 and p99 and, with `BENCH_CSV` set, appends them to that file. Needs a preloaded cluster
//! with the extension created in database `postgres` on 127.0.0.1:PORT.

use pageperfect_it::bench_csv::{self, Better, Row};
use postgres::{Client, NoTls};
use std::thread;
use std::time::Duration;

const ROUNDS: usize = 40;
const POLL_INTERVAL_MS: i32 = 100;

fn connect(port: u16) -> Client {
    Client::connect(&format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), NoTls).expect("connect to the bench cluster")
}

/// One side: `read_sql` waits for a message and returns the database clock when it got one;
/// `send_sql` sends one and returns the database clock just before it commits. Milliseconds, sorted.
fn latencies(port: u16, read_sql: &'static str, send_sql: &'static str) -> Vec<f64> {
    let mut sender = connect(port);
    let mut seed: u64 = 0x5eed_0001;
    let mut latencies: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let reader = thread::spawn(move || connect(port).query_one(read_sql, &[]).expect("the read").get::<_, f64>(0));
            // 150-250 ms: past the reader's first empty read, at a random point of its poll cycle.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            thread::sleep(Duration::from_millis(150 + seed % 100));
            let sent_at: f64 = sender.query_one(send_sql, &[]).expect("the send").get(0);
            (reader.join().expect("the reader") - sent_at) * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: bench-wakeup PORT");
    let mut setup = connect(port);
    setup
        .batch_execute(&format!(
            "SELECT pageperfect.create_queue('bench_wakeup');
             CREATE TABLE IF NOT EXISTS bench_wakeup_plain (id bigserial PRIMARY KEY, message jsonb NOT NULL);
             -- pgmq's read_with_poll: read; when nothing came, sleep the poll interval and read again.
             CREATE OR REPLACE FUNCTION bench_wakeup_poll(max_poll_seconds int) RETURNS SETOF bench_wakeup_plain
             LANGUAGE plpgsql AS $$
             DECLARE
                 deadline timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
             BEGIN
                 LOOP
                     RETURN QUERY DELETE FROM bench_wakeup_plain
                                   WHERE id = (SELECT id FROM bench_wakeup_plain ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                                  RETURNING *;
                     IF FOUND OR clock_timestamp() >= deadline THEN
                         RETURN;
                     END IF;
                     PERFORM pg_sleep({POLL_INTERVAL_MS} / 1000.0);
                 END LOOP;
             END
             $$;"
        ))
        .expect("bench set-up");
    let ours = latencies(
        port,
        "SELECT extract(epoch FROM clock_timestamp())::float8 FROM pageperfect.read_with_poll('bench_wakeup', 30, 1, 10, 100)",
        "SELECT extract(epoch FROM clock_timestamp())::float8 FROM (SELECT pageperfect.send('bench_wakeup', '{}')) s",
    );
    let polling = latencies(
        port,
        "SELECT extract(epoch FROM clock_timestamp())::float8 FROM bench_wakeup_poll(10)",
        "WITH sent AS (INSERT INTO bench_wakeup_plain (message) VALUES ('{}') RETURNING 1)
         SELECT extract(epoch FROM clock_timestamp())::float8 FROM sent",
    );
    setup
        .batch_execute("SELECT pageperfect.drop_queue('bench_wakeup'); DROP TABLE bench_wakeup_plain CASCADE")
        .expect("bench clean-up");
    let baseline_name = format!("pgmq-style polling every {POLL_INTERVAL_MS} ms");
    let rows: Vec<Row> = [("p50", 0.5), ("p99", 0.99)]
        .iter()
        .map(|(name, p)| {
            Row::new("wakeup", &format!("send to waiting read {name}"), "ms", Better::Lower, percentile(&ours, *p), &baseline_name, percentile(&polling, *p))
        })
        .collect();
    for row in &rows {
        println!("{:<32} pageperfect {:>8.1} ms   {} {:>8.1} ms", row.case, row.pageperfect, row.baseline_name, row.baseline);
    }
    if let Ok(path) = std::env::var("BENCH_CSV") {
        if let Err(e) = bench_csv::append(path.as_ref(), &rows) {
            eprintln!("cannot append to {path}: {e}");
            std::process::exit(1);
        }
    }
}
