//! `bench-pipeline MODE PAGES LATENCY_MS`: the whole PagePerfect workflow (crawl, segment and
//! embed, keyword clustering, gap analysis, draft) on a preloaded cluster, against a loopback site
//! and a loopback OpenAI-compatible model server that both answer after LATENCY_MS. Each page has
//! 28 days of Search Console rows for eight queries in four topics, most of which the page lacks.
//! Stages run with concurrency `BENCH_CONCURRENCY` (default 4), the crawl as many at a time on
//! the one site, and one owner may have `BENCH_JOBS_PER_OWNER` (default 8) jobs in progress, as a
//! user tunes them for a bulk run of their own site.
//!
//! - `throughput`: pages per minute, beside the baseline of the same HTTP calls (replayed from
//!   what the servers received) made one after another with no database: what a script or edge
//!   function doing one page at a time would reach at best. Made one at a time, the calls take
//!   time in proportion to their number, so the baseline replays every BASELINE_STRIDE-th call of
//!   each server and counts the pages that share of the calls stands for.
//!   Also the time to the first completed page: from the start of the statement that queues the
//!   PAGES workflows to the first job's completion (the database's clock on both ends), beside
//!   one page's share of the baseline's time (its total over the pages it stands for), which is
//!   when a script doing one page at a time would have its first page: what a user waits before
//!   seeing a first result either way.
//! - `memory`: the pipeline workers' private resident memory (RssAnon), sampled every second; it
//!   must stay flat: the row compares the peak over the second half of the pages with the peak
//!   over the first half (memory that grew with every page would show as the difference).
//!
//! Prints progress and a summary; with `BENCH_CSV` set, appends its row to that file
//! (scripts/bench.sh's results format).

use pageperfect_it::bench_csv::{self, Better, Row};
use pageperfect_it::model_server::{self, ModelServer};
use pageperfect_it::site::{guide_page, Received, Route, Site};
use pageperfect_it::Cluster;
use postgres::Client;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The baseline replays one call in this many (see the module comment).
const BASELINE_STRIDE: usize = 5;

/// Appends one row to `BENCH_CSV`, if set.
fn record(benchmark: &str, case: &str, unit: &str, better: Better, pageperfect: f64, baseline_name: &str, baseline: f64) {
    let Ok(path) = std::env::var("BENCH_CSV") else { return };
    let row = Row::new(benchmark, case, unit, better, pageperfect, baseline_name, baseline);
    bench_csv::append(Path::new(&path), &[row]).unwrap_or_else(|e| panic!("{path}: {e}"));
}

fn setting(name: &str, default: i32) -> i32 {
    std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// Kilobytes of private resident memory of process `pid`.
fn rss_anon_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no RssAnon for process {pid}"))
}

fn pipeline_worker_pids(client: &mut Client) -> Vec<i32> {
    client.query("SELECT pid FROM pageperfect.workers WHERE kind = 'pipeline' ORDER BY worker_name", &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Sends one request and reads the whole answer (the test servers close every connection).
fn replay(address: &str, request: &Received) {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        request.method,
        request.path,
        request.body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&request.body)).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "replayed {} {}: {}", request.method, request.path, String::from_utf8_lossy(&answer[..answer.len().min(200)]));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-pipeline throughput|memory PAGES LATENCY_MS";
    let mode = args.next().expect(usage);
    let pages: usize = args.next().expect(usage).parse().expect("PAGES must be a number");
    let latency = Duration::from_millis(args.next().expect(usage).parse().expect("LATENCY_MS must be a number"));
    assert!(matches!(mode.as_str(), "throughput" | "memory"), "{usage}");
    let (concurrency, jobs_per_owner) = (setting("BENCH_CONCURRENCY", 4), setting("BENCH_JOBS_PER_OWNER", 8));

    let site = Site::with_handler(move |request| {
        let route = match request.path.as_str() {
            "/robots.txt" => Route::status(200, "text/plain", "User-agent: *\nAllow: /\n"),
            path => match path.strip_prefix("/page/").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => Route::html(&guide_page(n)),
                None => Route::status(404, "text/plain", "not found"),
            },
        };
        route.delayed(latency)
    });
    let models = ModelServer::with_latency(latency);
    let settings = [
        "pageperfect.crawl_allow_private = on".to_string(),
        "pageperfect.embedding_provider = openai".to_string(),
        format!("pageperfect.embedding_url = '{}'", models.url(model_server::EMBEDDINGS)),
        "pageperfect.llm_provider = openai".to_string(),
        format!("pageperfect.llm_url = '{}'", models.url(model_server::CHAT)),
        "synchronous_commit = off".to_string(),
    ];
    let cluster = Cluster::start("bench-pipeline", true, &settings.iter().map(String::as_str).collect::<Vec<_>>());
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION pageperfect").unwrap();
    // All pages are on one site, the user's own: crawling it as many at a time as the other
    // stages run is theirs to allow (polite crawling's default is one at a time per host).
    client
        .execute("UPDATE pageperfect.stage_config SET concurrency = $1::int, per_host_limit = CASE WHEN per_host_limit IS NOT NULL THEN $1::int END", &[&concurrency])
        .unwrap();
    client.execute("UPDATE pageperfect.parameters SET value = to_jsonb($1::int) WHERE name = 'max_jobs_per_owner'", &[&jobs_per_owner]).unwrap();
    client
        .execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - d, 'sc-domain:bench', $1 || n, q, 3, imp, pos
               FROM generate_series(0, $2 - 1) n, generate_series(1, 28) d,
                    (VALUES ('brew ratio grams', 120, 8.0), ('brew ratio grams chart', 90, 9.0),
                            ('coarse grind size', 80, 3.0), ('coarse grind size chart', 60, 3.5),
                            ('water temperature coffee', 70, 6.0), ('best water temperature coffee', 50, 6.5),
                            ('sour coffee fix', 40, 4.0), ('sour coffee fix quick', 30, 4.2)) v (q, imp, pos)",
            &[&site.url("/page/"), &(pages as i32)],
        )
        .unwrap();
    // As autovacuum would soon after such a load: the run measures steady state.
    client.batch_execute("ANALYZE pageperfect.gsc_page_query_daily").unwrap();
    let workers = pipeline_worker_pids(&mut client);
    let memory = || -> u64 { workers.iter().map(|&pid| rss_anon_kb(pid)).sum() };
    println!("pipeline workers' private memory before the run: {} kB", memory());

    let started = Instant::now();
    let queued_at: f64 = client.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]).unwrap().get(0);
    client.execute("SELECT count(pageperfect.run_workflow($1 || n)) FROM generate_series(0, $2 - 1) n", &[&site.url("/page/"), &(pages as i32)]).unwrap();
    let queueing = started.elapsed();
    // (seconds into the run, kB) every second.
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut reported = 0;
    let mut half_done_at = f64::MAX;
    let (completed, dead) = loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'dead') FROM pageperfect.jobs",
                &[],
            )
            .unwrap();
        let (completed, dead): (i64, i64) = (row.get(0), row.get(1));
        let done = (completed + dead) as usize;
        let seconds = started.elapsed().as_secs_f64();
        if samples.last().is_none_or(|(at, _)| seconds - at >= 1.0) {
            samples.push((seconds, memory()));
        }
        if done * 10 / pages > reported {
            reported = done * 10 / pages;
            if done * 2 >= pages {
                half_done_at = half_done_at.min(seconds);
            }
            println!("{seconds:>6.1} s  {done} of {pages} pages done; pipeline workers' private memory {} kB", samples.last().unwrap().1);
        }
        if done == pages {
            break (completed, dead);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(pipeline_worker_pids(&mut client), workers, "a pipeline worker restarted during the run");
    let drafts: i64 = client.query_one("SELECT count(*) FROM pageperfect.rewrite_drafts WHERE provider = 'openai'", &[]).unwrap().get(0);
    let rate = pages as f64 * 60.0 / elapsed;
    println!(
        "pipeline: {pages} pages in {elapsed:.1} s = {rate:.0} pages/minute ({completed} completed, {dead} dead, {drafts} drafts; \
         site and model server answering after {} ms; stage concurrency {concurrency}, {jobs_per_owner} jobs per owner)",
        latency.as_millis(),
    );
    assert_eq!((completed, dead), (pages as i64, 0), "every page must complete");
    let first_page_ms: f64 = client
        .query_one("SELECT (extract(epoch FROM min(last_completed_at))::float8 - $1) * 1000 FROM pageperfect.jobs WHERE status = 'completed'", &[&queued_at])
        .unwrap()
        .get(0);
    println!("first completed page {first_page_ms:.0} ms after the start of queueing the {pages} (the queueing statement took {} ms)", queueing.as_millis());
    for row in client
        .query(
            "SELECT stage, attempts, round(latency_p50_ms::numeric)::text, round(latency_p95_ms::numeric)::text
               FROM pageperfect.execution_insights(now() - interval '1 day', now() + interval '1 minute') ORDER BY stage = '*', stage",
            &[],
        )
        .unwrap()
    {
        let (stage, attempts, p50, p95): (String, i64, Option<String>, Option<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
        println!("  {stage:<20} {attempts:>6} attempts  p50 {:>5} ms  p95 {:>5} ms", p50.unwrap_or_default(), p95.unwrap_or_default());
    }

    if mode == "memory" {
        let peak = |from: f64, until: f64| {
            samples.iter().filter(|(at, _)| (from..=until).contains(at)).map(|(_, kb)| *kb).max().unwrap_or(0) as f64 / 1024.0
        };
        let (first_half, second_half) = (peak(0.0, half_done_at), peak(half_done_at, f64::MAX));
        println!(
            "memory: peak {first_half:.1} MB over the first half of the pages, {second_half:.1} MB over the second ({} samples)",
            samples.len()
        );
        record(
            "pipeline_memory",
            &format!("second half of {pages} pages"),
            "MB peak",
            Better::Lower,
            second_half,
            "first half",
            first_half,
        );
        return;
    }
    // The baseline: every request the servers received, again, one at a time, with no database.
    let site_address = site.base.trim_start_matches("http://").to_string();
    let model_address = models.site.base.trim_start_matches("http://").to_string();
    let crawled: Vec<Received> = site
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|path| Received { method: "GET".into(), path: path.clone(), headers: Default::default(), body: vec![] })
        .collect();
    let modelled: Vec<Received> = [model_server::EMBEDDINGS, model_server::CHAT].iter().flat_map(|e| models.requests(e)).collect();
    let total = crawled.len() + modelled.len();
    let started = Instant::now();
    let mut replayed = 0;
    for (address, requests) in [(&site_address, &crawled), (&model_address, &modelled)] {
        for request in requests.iter().step_by(BASELINE_STRIDE) {
            replay(address, request);
            replayed += 1;
        }
    }
    let replay_seconds = started.elapsed().as_secs_f64();
    let baseline = pages as f64 * replayed as f64 / total as f64 * 60.0 / replay_seconds;
    // One page's share: the time all the calls would take one at a time, over the pages.
    let baseline_page_ms = replay_seconds * 1e3 * total as f64 / replayed as f64 / pages as f64;
    println!(
        "baseline: {replayed} of the same {total} requests one at a time, no database: {baseline:.0} pages/minute, \
         {baseline_page_ms:.0} ms a page"
    );
    record("pipeline", &format!("{pages} pages at {} ms", latency.as_millis()), "pages/min", Better::Higher, rate, "HTTP calls one page at a time", baseline);
    record(
        "pipeline_first_page",
        &format!("first of {pages} queued pages at {} ms", latency.as_millis()),
        "ms",
        Better::Lower,
        first_page_ms,
        "one page's HTTP calls one at a time",
        baseline_page_ms,
    );
}
