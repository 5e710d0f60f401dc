//! `bench-crawl PAGES SLOW_MS`: polite crawling. PAGES crawl-only jobs spread in turn over ten
//! loopback hosts (127.0.0.2 to .11), nine answering after 20 ms and one after SLOW_MS, crawled
//! with one slot per host (`submit_crawl` concurrency 10). It times how long the nine fast hosts'
//! pages take to be crawled:
//!
//! - alone (only their pages queued): the baseline;
//! - beside the slow host's pages, as pageperfect crawls (one request at a time per host): the
//!   nine must finish as fast as alone;
//! - beside them in a first-come queue (`per_host_limit` off): the slow host's pages take the
//!   slots in turn and hold up the others behind them.
//!
//! All three runs use one preloaded cluster, one after the other. Prints a summary; with
//! `BENCH_CSV` set, appends its rows to that file (scripts/bench.sh's results format).

use pageperfect_it::bench_csv::{self, Better, Row};
use pageperfect_it::site::{guide_page, Route, Site};
use pageperfect_it::Cluster;
use postgres::Client;
use std::path::Path;
use std::time::{Duration, Instant};

const HOSTS: usize = 10;
const FAST_LATENCY: Duration = Duration::from_millis(20);

/// Queues the pages, waits until every page of the fast hosts is crawled and returns how long
/// that took; then cancels and forgets whatever is left, for the next run.
fn time_fast_pages(client: &mut Client, pages: &[String], fast_prefixes: &[String]) -> f64 {
    let fast = pages.iter().filter(|url| fast_prefixes.iter().any(|p| url.starts_with(p.as_str()))).count() as i64;
    let patterns: Vec<String> = fast_prefixes.iter().map(|p| format!("{p}%")).collect();
    let started = Instant::now();
    client.execute("SELECT count(pageperfect.enqueue_job(u, ARRAY['submit_crawl'])) FROM unnest($1::text[]) u", &[&pages]).unwrap();
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'dead')
                   FROM pageperfect.jobs WHERE url LIKE ANY ($1)",
                &[&patterns],
            )
            .unwrap();
        let (completed, dead): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(dead, 0, "a fast page could not be crawled");
        if completed == fast {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{completed} of {fast} fast pages after 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    client.execute("SELECT count(pageperfect.cancel_job(id)) FROM pageperfect.jobs WHERE status IN ('queued', 'processing')", &[]).unwrap();
    // Attempts cancelled mid-request end at their next safe point.
    std::thread::sleep(Duration::from_secs(1));
    client.batch_execute("DELETE FROM pageperfect.jobs; DELETE FROM pageperfect.host_politeness").unwrap();
    elapsed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-crawl PAGES SLOW_MS";
    let pages: usize = args.next().expect(usage).parse().expect("PAGES must be a number");
    let slow_latency = Duration::from_millis(args.next().expect(usage).parse().expect("SLOW_MS must be a number"));

    let hosts: Vec<Site> = (0..HOSTS)
        .map(|i| {
            let latency = if i == 0 { slow_latency } else { FAST_LATENCY };
            Site::on_host(2 + i as u8, move |request| {
                if request.path == "/robots.txt" {
                    return Route::status(200, "text/plain", "User-agent: *\nAllow: /\n");
                }
                Route::html(&guide_page(request.path.len())).delayed(latency)
            })
        })
        .collect();
    let fast_prefixes: Vec<String> = hosts[1..].iter().map(|site| site.base.clone()).collect();
    let all: Vec<String> = (0..pages).map(|n| hosts[n % HOSTS].url(&format!("/page/{n}"))).collect();
    let fast_only: Vec<String> = all.iter().filter(|url| !url.starts_with(&hosts[0].base)).cloned().collect();

    let settings = ["pageperfect.crawl_allow_private = on", "synchronous_commit = off"];
    let cluster = Cluster::start("bench-crawl", true, &settings);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE EXTENSION pageperfect;
             UPDATE pageperfect.stage_config SET concurrency = 10 WHERE stage = 'submit_crawl';
             UPDATE pageperfect.parameters SET value = '100000' WHERE name = 'max_jobs_per_owner'",
        )
        .unwrap();
    // A first run warms the robots.txt cache, the plans and the connections alike for all three.
    time_fast_pages(&mut client, &fast_only[..fast_only.len().min(90)], &fast_prefixes);

    let alone = time_fast_pages(&mut client, &fast_only, &fast_prefixes);
    let beside = time_fast_pages(&mut client, &all, &fast_prefixes);
    client.batch_execute("UPDATE pageperfect.stage_config SET per_host_limit = NULL WHERE stage = 'submit_crawl'").unwrap();
    let first_come = time_fast_pages(&mut client, &all, &fast_prefixes);

    let fast = fast_only.len();
    let slow_ms = slow_latency.as_millis();
    println!("crawl: the {fast} pages of 9 hosts answering after 20 ms, crawled with 10 slots:");
    println!("  alone                                      {alone:>6.2} s");
    println!("  beside {:>4} pages of a host taking {slow_ms} ms  {beside:>6.2} s  (one request at a time per host)", pages - fast);
    println!("  the same in a first-come queue             {first_come:>6.2} s  (no per-host limit)");
    let Ok(path) = std::env::var("BENCH_CSV") else { return };
    let case = format!("{fast} pages of 9 hosts beside a {slow_ms} ms host");
    let rows = [
        Row::new("crawl", &case, "s", Better::Lower, beside, "the 9 hosts alone", alone),
        Row::new("crawl", &case, "s", Better::Lower, beside, "first-come queue", first_come),
    ];
    bench_csv::append(Path::new(&path), &rows).unwrap_or_else(|e| panic!("{path}: {e}"));
}
