//! `soak [--minutes N] [--seed S] [--sabotage]`: a long mixed run against one preloaded cluster
//! (2 pipeline workers), a loopback web site and a loopback OpenAI-compatible model server, with
//! faults, that ends with a count of lost, duplicated and stuck work. Not part of `make test`: scripts/soak.sh
//! runs it (30 minutes by default). Needs the extension installed, `PG_CONFIG` and
//! `PAGEPERFECT_WORK` set as scripts/common.sh sets them.
//!
//! For N minutes, at once:
//!
//! - cron: four jobs on '1 seconds' / '2 seconds' schedules (one sleeps past its tick, so ticks
//!   are skipped) insert a ledger row tagged with their run id, which the command reads from its
//!   `application_name` ("pageperfect job J run R"). Every run in `job_run_details` that
//!   succeeded must have written exactly one row; a run that failed may have written one only if
//!   its commit raced a crash (reported, not counted); no run may be left running, and every job
//!   must run again after the last fault.
//! - workflows: `run_workflow` on 24 pages of the site (three answer 500 on every third fetch,
//!   three after 1.5 s, one is a 404), at most 6 under way at once, with the `openai` providers against the model server, which gets a
//!   429 or a 500 injected every few seconds. Each start is recorded in a ledger row in the same
//!   statement, so a start whose commit a crash hid is retried without doubling. Every job must
//!   end `completed` or `dead` with a dead letter giving the reason, and each URL must have as
//!   many jobs as starts.
//! - queue: two producers send messages with unique ids (single sends and bursts of 100), each
//!   send committed together with a ledger row; two consumers read with a 5 s visibility timeout,
//!   "process", and delete, the delete and its ledger row again in one statement (a consumer
//!   drops one message in 200 on its first delivery, as a crashed consumer would). Every id must
//!   be deleted exactly once and none left; redeliveries (at-least-once) are reported apart.
//! - HTTP: a burst of 100 `net.http_get` to a loopback server every 8 s (one path in 10 answers
//!   500 once, one 429 with Retry-After once, one in 100 answers after the 1 s timeout). Every
//!   request must end `done` or `failed` with a reason; a stored response must match what the
//!   server logged answering it, and no request may reach the server after its response was
//!   stored (a resend of an attempt cut short by a crash is at-least-once, reported apart).
//! - hostile input: one workflow start in 12 is a 4.5 MB page of 270,000 paragraphs (capped at
//!   2,000), and every 45 s a session holds row locks on cron runs, queue messages and workflows
//!   for 10 s; both must complete or wait without losing, doubling or sticking anything.
//! - faults: every duration/6 (20–60 s), `kill -9` of a random pipeline worker or the scheduler
//!   (the postmaster then resets every backend), and an immediate stop and start of the whole
//!   cluster once (or every 10 minutes in runs over 15 minutes). Each waits (5 s at most) until
//!   its victim holds work: stage or HTTP claims, a cron run in progress. Clients reconnect and
//!   retry.
//!
//! Then the load stops, the system gets up to 2 minutes to settle, and a table says per kind how
//! much was created, completed, lost, duplicated and stuck. Exits non-zero (a panic, which keeps
//! the cluster's directory for inspection) if any lost, duplicated or stuck count is not zero.
//! `--sabotage` corrupts a few records of every kind just before the count (a check that the
//! count catches them: that run must fail).

use pageperfect_it::model_server::{self, Fault, ModelServer};
use pageperfect_it::site::{guide_page, Route, Site};
use pageperfect_it::Cluster;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PAGES: usize = 24;
/// The page that is not there: every workflow on it ends dead (a permanent error).
const MISSING_PAGE: usize = 23;
/// Workflows started and not yet ended, at most.
const OUTSTANDING_WORKFLOWS: i64 = 6;
const QUEUE: &str = "soak";
const QUEUE_VT: i32 = 5;
const HTTP_BURST: i64 = 100;
const QUEUE_BURST: i64 = 100;
const HTTP_TIMEOUT_MS: i32 = 1000;
const SETTLE: Duration = Duration::from_secs(120);
/// The soak's cron jobs: name, schedule, extra statement after the ledger insert.
const CRON_JOBS: [(&str, &str, &str); 4] = [
    ("soak-1s-a", "1 seconds", ""),
    ("soak-1s-b", "1 seconds", ""),
    ("soak-2s", "2 seconds", ""),
    // Runs 1.5 s on a 1 s schedule: every other tick comes while it runs and is skipped; a fault
    // during the sleep rolls the insert back and the run is failed.
    ("soak-1s-slow", "1 seconds", "; SELECT pg_sleep(1.5)"),
];

fn epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// xorshift64*: enough randomness for picking victims and faults, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `base` scaled by a factor in [0.8, 1.2).
    fn jitter(&mut self, base: Duration) -> Duration {
        base.mul_f64(0.8 + 0.4 * (self.below(1000) as f64 / 1000.0))
    }
}

// --- connections that survive crashes ----------------------------------------------------------

/// Whether an error means "the server went away or the statement lost a race; run it again":
/// the connection broke (no SQLSTATE), or the server shut down, crashed, was starting up, or
/// reported a serialization failure or deadlock.
fn transient(error: &postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
                || code == SqlState::T_R_DEADLOCK_DETECTED.code()
        }
    }
}

/// A superuser connection to `postgres` that reconnects after a crash or a restart.
struct Db {
    params: String,
    client: Option<Client>,
    who: String,
    /// Statements run again after a transient failure.
    retries: u64,
}

impl Db {
    fn new(port: u16, who: &str) -> Db {
        Db {
            params: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5 application_name={who}"),
            client: None,
            who: who.to_string(),
            retries: 0,
        }
    }

    fn connected(&mut self) -> &mut Client {
        let started = Instant::now();
        loop {
            if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
                return self.client.as_mut().unwrap();
            }
            self.client = None;
            match Client::connect(&self.params, NoTls) {
                Ok(client) => self.client = Some(client),
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(180), "{}: cannot connect for 3 minutes: {e}", self.who);
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Runs `op`, again (on a new connection if need be) while it fails transiently; other errors
    /// go back to the caller. `op` must be safe to run again: see the callers.
    fn run<T>(&mut self, mut op: impl FnMut(&mut Client) -> Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        let started = Instant::now();
        loop {
            let result = op(self.connected());
            match result {
                Err(e) if transient(&e) => {
                    assert!(started.elapsed() < Duration::from_secs(300), "{}: a statement kept failing for 5 minutes: {e}", self.who);
                    if e.code().is_none_or(|c| !c.code().starts_with("40")) {
                        self.client = None;
                    }
                    self.retries += 1;
                    thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// `run` for statements that must not fail otherwise.
    fn must<T>(&mut self, what: &str, op: impl FnMut(&mut Client) -> Result<T, postgres::Error>) -> T {
        let who = self.who.clone();
        self.run(op).unwrap_or_else(|e| panic!("{who}: {what}: {}", describe(&e)))
    }

    fn int(&mut self, sql: &str) -> i64 {
        self.must(sql, |c| c.query_one(sql, &[]).map(|r| r.get(0)))
    }
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

// --- shared state --------------------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    /// Producers, workflow starters, HTTP bursts and faults stop.
    stop_load: AtomicBool,
    /// Consumers stop (after the settle).
    stop_consumers: AtomicBool,
    /// Every fault: (seconds into the run, what).
    faults: Mutex<Vec<(f64, String)>>,
    /// Database clock (epoch seconds) when the workers were all back after the last fault.
    last_recovery: Mutex<f64>,
    /// Problems the fault thread saw (workers not coming back).
    fault_problems: Mutex<Vec<String>>,
    /// Queue: deliveries per id, as the consumers saw them.
    deliveries: Mutex<HashMap<i64, u32>>,
    redelivered_read_ct: AtomicU64,
    dropped_on_purpose: AtomicU64,
    /// Statements that failed for a reason other than a crash (the error, counted).
    client_errors: Mutex<HashMap<String, u64>>,
    retries: AtomicU64,
    /// Starts / sends whose first commit a crash hid and whose retry found them committed.
    confirmed_by_retry: AtomicU64,
    model_faults: AtomicU64,
}

impl Shared {
    fn client_error(&self, what: &str, e: &postgres::Error) {
        *self.client_errors.lock().unwrap().entry(format!("{what}: {}", describe(e))).or_default() += 1;
    }
}

/// Sleeps `total` in small steps; false if `stop` was set meanwhile.
fn nap(total: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + total;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

// --- the web site and the HTTP target --------------------------------------------------------------

/// 4.5 MB of distinct three-word paragraphs (about 270,000 fragments; a page keeps 2,000).
fn hostile_page() -> String {
    let mut page = String::from("<!doctype html><html><head><title>Many</title></head><body>");
    let mut n = 0;
    while page.len() < 4_500_000 {
        page.push_str(&format!("<p>a b c {n}</p>"));
        n += 1;
    }
    page + "</body></html>"
}

/// Pages /p/0 … /p/23: n % 8 == 1 answers 500 on every third fetch, n % 8 == 2 after 1.5 s,
/// /p/23 is a 404; /hostile is `hostile_page`; robots.txt allows everything.
fn web_site() -> Site {
    let fetches: Mutex<HashMap<String, usize>> = Mutex::default();
    let hostile = hostile_page();
    Site::with_handler(move |request| {
        let times = {
            let mut fetches = fetches.lock().unwrap();
            let entry = fetches.entry(request.path.clone()).or_default();
            *entry += 1;
            *entry
        };
        if request.path == "/robots.txt" {
            return Route::status(200, "text/plain", "User-agent: *\nAllow: /\n");
        }
        if request.path == "/hostile" {
            return Route::html(&hostile);
        }
        match request.path.strip_prefix("/p/").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n < PAGES && n != MISSING_PAGE => match n % 8 {
                1 if times % 3 == 1 => Route::status(500, "text/plain", "try again"),
                2 => Route::html(&guide_page(n)).delayed(Duration::from_millis(1500)),
                _ => Route::html(&guide_page(n)),
            },
            _ => Route::status(404, "text/plain", "not found"),
        }
    })
}

/// What the HTTP target answered: per path, (epoch seconds when it read the request, status).
type Hits = Arc<Mutex<HashMap<String, Vec<(f64, u16)>>>>;

/// Paths /h/N: N % 100 == 3 answers after 2.5 s (past the requests' 1 s timeout), N % 10 == 1
/// answers 500 the first time, N % 10 == 2 answers 429 with Retry-After: 1 the first time;
/// everything else "answer N" after 50 ms (so that a burst stays in flight a little while).
fn http_target() -> (Site, Hits) {
    let hits: Hits = Arc::default();
    let log = Arc::clone(&hits);
    let site = Site::with_handler(move |request| {
        let at = epoch();
        let n: u64 = request.path.strip_prefix("/h/").and_then(|n| n.parse().ok()).unwrap_or(0);
        let mut log = log.lock().unwrap();
        let seen = log.entry(request.path.clone()).or_default();
        let route = match (n % 100, n % 10, seen.len()) {
            (3, _, _) => Route::status(200, "text/plain", "late").delayed(Duration::from_millis(2500)),
            (_, 1, 0) => Route::status(500, "text/plain", "try again"),
            (_, 2, 0) => Route::status(429, "text/plain", "slow down").with_header("Retry-After", "1"),
            _ => Route::status(200, "text/plain", &format!("answer {n}")).delayed(Duration::from_millis(50)),
        };
        seen.push((at, route.status));
        route
    });
    (site, hits)
}

// --- the load ----------------------------------------------------------------------------------------

fn workflow_starter(port: u16, site: String, shared: Arc<Shared>) {
    let mut db = Db::new(port, "soak-workflows");
    let mut n: usize = 0;
    while !shared.stop_load.load(Ordering::SeqCst) {
        let outstanding = db.int(
            "SELECT count(*) FROM soak.workflows w JOIN pageperfect.jobs j ON j.id = w.job_id
              WHERE j.status NOT IN ('completed', 'dead')",
        );
        if outstanding >= OUTSTANDING_WORKFLOWS {
            nap(Duration::from_millis(200), &shared.stop_load);
            continue;
        }
        let token = format!("wf-{n}");
        // One start in 12 is the hostile page: it must complete beside the rest, stalling nothing.
        let url = if n % 12 == 11 { format!("{site}/hostile") } else { format!("{site}/p/{}", n % PAGES) };
        // The ledger row and the job commit together; the token makes a retry after a crash
        // that hid the first commit fail with a unique violation instead of starting it twice.
        let mut attempts = 0;
        let result = db.run(|c| {
            attempts += 1;
            c.execute("INSERT INTO soak.workflows (token, url, job_id) VALUES ($1, $2, pageperfect.run_workflow($2, deduplicate => false))", &[&token, &url])
        });
        match result {
            Ok(_) => {}
            Err(e) if unique_violation(&e) && attempts > 1 => {
                shared.confirmed_by_retry.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => shared.client_error("run_workflow", &e),
        }
        n += 1;
        nap(Duration::from_millis(300), &shared.stop_load);
    }
    shared.retries.fetch_add(db.retries, Ordering::Relaxed);
}

fn producer(port: u16, index: i64, shared: Arc<Shared>, seed: u64) {
    let mut db = Db::new(port, &format!("soak-producer-{index}"));
    let mut rng = Rng(seed);
    let mut next_id = index * 1_000_000_000 + 1;
    let mut round = 0u64;
    while !shared.stop_load.load(Ordering::SeqCst) {
        round += 1;
        if round.is_multiple_of(10) {
            // A burst: the ids in the ledger and the messages in the queue, one transaction.
            let (first, last) = (next_id, next_id + QUEUE_BURST - 1);
            let mut attempts = 0;
            let result = db.run(|c| {
                attempts += 1;
                let mut tx = c.transaction()?;
                tx.execute("INSERT INTO soak.sent (id) SELECT generate_series($1::bigint, $2::bigint)", &[&first, &last])?;
                tx.query(
                    "SELECT pageperfect.send_batch($3::text, ARRAY(SELECT jsonb_build_object('id', i) FROM generate_series($1::bigint, $2::bigint) i))",
                    &[&first, &last, &QUEUE],
                )?;
                tx.commit()
            });
            match result {
                Ok(()) => {}
                Err(e) if unique_violation(&e) && attempts > 1 => {
                    shared.confirmed_by_retry.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => shared.client_error("send_batch", &e),
            }
            next_id = last + 1;
        } else {
            for _ in 0..1 + rng.below(5) {
                let id = next_id;
                next_id += 1;
                let mut attempts = 0;
                let result = db.run(|c| {
                    attempts += 1;
                    c.execute(
                        "INSERT INTO soak.sent (id) SELECT $1::bigint FROM pageperfect.send($2::text, jsonb_build_object('id', $1::bigint))",
                        &[&id, &QUEUE],
                    )
                });
                match result {
                    Ok(_) => {}
                    Err(e) if unique_violation(&e) && attempts > 1 => {
                        shared.confirmed_by_retry.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => shared.client_error("send", &e),
                }
            }
        }
        nap(Duration::from_millis(250), &shared.stop_load);
    }
    shared.retries.fetch_add(db.retries, Ordering::Relaxed);
}

fn consumer(port: u16, index: i32, shared: Arc<Shared>, seed: u64) {
    let mut db = Db::new(port, &format!("soak-consumer-{index}"));
    let mut rng = Rng(seed);
    while !shared.stop_consumers.load(Ordering::SeqCst) {
        // A read whose answer a crash hid leaves its messages invisible until their vt: they come
        // back then, with a higher read_ct (a redelivery).
        let rows = match db.run(|c| {
            c.query("SELECT msg_id, read_ct, (message->>'id')::bigint FROM pageperfect.read($1, $2, 20)", &[&QUEUE, &QUEUE_VT])
        }) {
            Ok(rows) => rows,
            Err(e) => {
                shared.client_error("read", &e);
                thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        if rows.is_empty() {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        let (mut msg_ids, mut ids) = (Vec::new(), Vec::new());
        {
            let mut deliveries = shared.deliveries.lock().unwrap();
            for row in &rows {
                let (msg_id, read_ct, id): (i64, i32, i64) = (row.get(0), row.get(1), row.get(2));
                *deliveries.entry(id).or_default() += 1;
                if read_ct > 1 {
                    shared.redelivered_read_ct.fetch_add(1, Ordering::Relaxed);
                }
                // As a consumer that crashed after reading: not deleted, back after the vt.
                if read_ct == 1 && rng.below(200) == 0 {
                    shared.dropped_on_purpose.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                msg_ids.push(msg_id);
                ids.push(id);
            }
        }
        // "Processing".
        thread::sleep(Duration::from_millis(2 * rows.len() as u64));
        // The delete and its ledger rows commit together: a message deleted by someone else (its
        // vt passed and another consumer got it) adds no row, and a retry after a crash that hid
        // the commit finds the messages gone and adds none either.
        if let Err(e) = db.run(|c| {
            c.execute(
                "INSERT INTO soak.done (id, msg_id, consumer)
                 SELECT u.id, d.msg_id, $4::int FROM pageperfect.delete($3::text, $1::bigint[]) AS d (msg_id)
                   JOIN unnest($1::bigint[], $2::bigint[]) AS u (msg_id, id) ON u.msg_id = d.msg_id",
                &[&msg_ids, &ids, &QUEUE, &index],
            )
        }) {
            shared.client_error("delete", &e);
        }
    }
    shared.retries.fetch_add(db.retries, Ordering::Relaxed);
}

fn http_bursts(port: u16, target: String, shared: Arc<Shared>) {
    let mut db = Db::new(port, "soak-http");
    let mut next: i64 = 1;
    let mut burst: i32 = 0;
    loop {
        burst += 1;
        let (first, last) = (next, next + HTTP_BURST - 1);
        let prefix = format!("{target}/h/");
        let mut attempts = 0;
        let result = db.run(|c| {
            attempts += 1;
            c.execute(
                "INSERT INTO soak.http (n, req_id, burst)
                 SELECT n, net.http_get($1::text || n, timeout_milliseconds := $4::int), $5::int
                   FROM generate_series($2::bigint, $3::bigint) n",
                &[&prefix, &first, &last, &HTTP_TIMEOUT_MS, &burst],
            )
        });
        match result {
            Ok(_) => {}
            Err(e) if unique_violation(&e) && attempts > 1 => {
                shared.confirmed_by_retry.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => shared.client_error("net.http_get", &e),
        }
        next = last + 1;
        if !nap(Duration::from_secs(8), &shared.stop_load) {
            break;
        }
    }
    shared.retries.fetch_add(db.retries, Ordering::Relaxed);
}

/// Every 45 s, a superuser session holds row locks for 10 s on the newest cron runs, queue
/// messages and workflows (as a long report or a stuck migration would), then commits. The
/// workers wait at most their lock_timeout for them and carry on with the rest.
fn lock_holder(port: u16, shared: Arc<Shared>) {
    let mut db = Db::new(port, "soak-locks");
    while nap(Duration::from_secs(45), &shared.stop_load) {
        let held = db.run(|c| {
            let mut tx = c.transaction()?;
            tx.batch_execute(
                "SELECT 1 FROM pageperfect.job_run_details ORDER BY runid DESC LIMIT 5 FOR UPDATE;
                 SELECT 1 FROM pageperfect.queue_messages ORDER BY msg_id DESC LIMIT 5 FOR UPDATE;
                 SELECT 1 FROM pageperfect.jobs ORDER BY created_at DESC LIMIT 5 FOR UPDATE;
                 SELECT pg_sleep(10)",
            )?;
            tx.commit()
        });
        if let Err(e) = held {
            shared.client_error("lock holder", &e);
        }
    }
}

/// One 429 (Retry-After: 1) or 500 for the next request to the embeddings or chat endpoint,
/// every 5 s.
fn model_faults(models: Arc<ModelServer>, shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng(seed);
    while nap(Duration::from_secs(5), &shared.stop_load) {
        let endpoint = if rng.below(2) == 0 { model_server::EMBEDDINGS } else { model_server::CHAT };
        let fault = if rng.below(2) == 0 { Fault::TooManyRequests { retry_after_seconds: 1 } } else { Fault::ServerError };
        models.fail_next(endpoint, vec![fault]);
        shared.model_faults.fetch_add(1, Ordering::Relaxed);
    }
}

/// Live pageperfect workers: (worker_name, pid).
fn live_workers(db: &mut Db) -> Vec<(String, i32)> {
    db.must("live workers", |c| {
        c.query(
            "SELECT w.worker_name, w.pid FROM pageperfect.workers w
               JOIN pg_stat_activity a ON a.pid = w.pid AND a.backend_type LIKE 'pageperfect %'
              ORDER BY 1",
            &[],
        )
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })
}

/// Waits (60 s at most) until the scheduler and both pipeline workers run as processes other
/// than `before`, and records the database clock then.
fn wait_recovered(db: &mut Db, before: &HashSet<i32>, shared: &Shared, what: &str) {
    let started = Instant::now();
    loop {
        let workers = live_workers(db);
        if workers.len() == 3 && workers.iter().all(|(_, pid)| !before.contains(pid)) {
            let now: f64 = db.must("clock", |c| c.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]).map(|r| r.get(0)));
            *shared.last_recovery.lock().unwrap() = now;
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            shared.fault_problems.lock().unwrap().push(format!("after {what}: the workers were not all back within 60 s: {workers:?}"));
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Work in progress: (stages processing, HTTP requests in flight) claimed by `pid` (by anyone
/// when None), and the soak's cron runs running.
fn work_held(db: &mut Db, pid: Option<i32>) -> (i64, i64, i64) {
    db.must("work held", |c| {
        c.query_one(
            "SELECT (SELECT count(*) FROM pageperfect.job_stages WHERE status = 'processing' AND ($1::int IS NULL OR claimed_pid = $1)),
                    (SELECT count(*) FROM pageperfect.http_requests WHERE status = 'in_flight' AND ($1::int IS NULL OR claimed_pid = $1)),
                    (SELECT count(*) FROM pageperfect.job_run_details WHERE status = 'running')",
            &[&pid],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
    })
}

fn fault_loop(cluster: Arc<Cluster>, shared: Arc<Shared>, duration: Duration, seed: u64) {
    let mut rng = Rng(seed);
    let mut db = Db::new(cluster.port, "soak-faults");
    let interval = (duration / 6).clamp(Duration::from_secs(20), Duration::from_secs(60));
    // Once half-way in short runs; every 10 minutes (not in the last minute) in long ones.
    let mut restarts: Vec<Duration> = if duration <= Duration::from_secs(15 * 60) {
        vec![duration / 2]
    } else {
        (1..).map(|k| Duration::from_secs(600 * k)).take_while(|t| *t + Duration::from_secs(60) < duration).collect()
    };
    let start = Instant::now();
    let mut next = rng.jitter(interval);
    loop {
        if !nap(next.saturating_sub(start.elapsed()), &shared.stop_load) {
            return;
        }
        let workers = live_workers(&mut db);
        if workers.is_empty() {
            next = start.elapsed() + rng.jitter(interval);
            continue;
        }
        let before: HashSet<i32> = workers.iter().map(|(_, pid)| *pid).collect();
        let restart = restarts.first().is_some_and(|t| start.elapsed() >= *t);
        // A fault that cuts nothing short tests little: wait (5 s at most) until the victim holds
        // work — stage or HTTP claims for a pipeline worker, a cron run in progress for the
        // scheduler, any of them for a restart.
        let (name, pid) = if restart { ("cluster".to_string(), 0) } else { workers[rng.below(workers.len() as u64) as usize].clone() };
        let waited = Instant::now();
        let mut held = (0, 0, 0);
        while waited.elapsed() < Duration::from_secs(5) && !shared.stop_load.load(Ordering::SeqCst) {
            held = work_held(&mut db, if name.starts_with("pipeline") { Some(pid) } else { None });
            let busy = match name.as_str() {
                "scheduler" => held.2 > 0,
                n if n.starts_with("pipeline") => held.0 + held.1 > 0,
                _ => held.0 + held.1 > 0 && held.2 > 0,
            };
            if busy {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let at = start.elapsed();
        let holding = format!("{} stages, {} HTTP requests, {} cron runs in progress", held.0, held.1, held.2);
        let what = if restart {
            restarts.remove(0);
            cluster.crash_and_restart();
            format!("immediate stop and start of the cluster ({holding})")
        } else {
            // The process may have gone since the query: no fault then, and that is fine.
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let holding = if name.starts_with("pipeline") { format!("{} stages, {} HTTP requests claimed", held.0, held.1) } else { holding };
            format!("kill -9 {name} (pid {pid}; {holding})")
        };
        println!("[{:>5.0}s] fault: {what}", at.as_secs_f64());
        shared.faults.lock().unwrap().push((at.as_secs_f64(), what.clone()));
        wait_recovered(&mut db, &before, &shared, &what);
        next = at + rng.jitter(interval);
    }
}

// --- progress and the final count ----------------------------------------------------------------

fn progress(db: &mut Db, jobids: &[i64]) -> String {
    let row = db.must("progress", |c| {
        c.query_one(
            "SELECT (SELECT count(*) FROM pageperfect.job_run_details WHERE jobid = ANY ($1) AND status = 'succeeded'),
                    (SELECT count(*) FROM pageperfect.job_run_details WHERE jobid = ANY ($1) AND status = 'failed'),
                    (SELECT coalesce(sum(skipped_runs), 0)::bigint FROM pageperfect.job WHERE jobid = ANY ($1)),
                    (SELECT count(*) FROM soak.workflows),
                    (SELECT count(*) FROM soak.workflows w JOIN pageperfect.jobs j ON j.id = w.job_id WHERE j.status = 'completed'),
                    (SELECT count(*) FROM soak.workflows w JOIN pageperfect.jobs j ON j.id = w.job_id WHERE j.status = 'dead'),
                    (SELECT count(*) FROM soak.sent),
                    (SELECT count(*) FROM soak.done),
                    (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'soak'),
                    (SELECT count(*) FROM soak.http),
                    (SELECT count(*) FROM soak.http h JOIN pageperfect.http_requests r ON r.id = h.req_id WHERE r.status = 'done'),
                    (SELECT count(*) FROM soak.http h JOIN pageperfect.http_requests r ON r.id = h.req_id WHERE r.status = 'failed')",
            &[&jobids],
        )
    });
    let v: Vec<i64> = (0..12).map(|i| row.get(i)).collect();
    format!(
        "cron {} ok/{} failed/{} skipped | workflows {} started, {} completed, {} dead | queue {} sent, {} deleted, {} waiting | http {} sent, {} done, {} failed",
        v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]
    )
}

#[derive(Default)]
struct Tally {
    created: i64,
    completed: i64,
    /// Ended for good with a stated reason (dead letter, failed request, failed cron run).
    failed: i64,
    lost: i64,
    duplicated: i64,
    stuck: i64,
    notes: Vec<String>,
}

/// What still keeps the system from being settled, or nothing.
fn unsettled(db: &mut Db, jobids: &[i64], last_recovery: f64) -> Vec<String> {
    let row = db.must("settle", |c| {
        c.query_one(
            "SELECT (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'soak'),
                    (SELECT count(*) FROM soak.sent s WHERE NOT EXISTS (SELECT FROM soak.done d WHERE d.id = s.id)),
                    (SELECT count(*) FROM soak.workflows w JOIN pageperfect.jobs j ON j.id = w.job_id
                      WHERE j.status NOT IN ('completed', 'dead')),
                    (SELECT count(*) FROM soak.http h JOIN pageperfect.http_requests r ON r.id = h.req_id
                      WHERE r.status NOT IN ('done', 'failed')),
                    (SELECT count(*) FROM unnest($1::bigint[]) j (jobid)
                      WHERE NOT EXISTS (SELECT FROM pageperfect.job_run_details d
                                         WHERE d.jobid = j.jobid AND d.status = 'succeeded'
                                           AND d.start_time > to_timestamp($2)))",
            &[&jobids, &last_recovery],
        )
    });
    let v: Vec<i64> = (0..5).map(|i| row.get(i)).collect();
    let mut waiting = Vec::new();
    for (n, what) in v.iter().zip([
        "queue messages waiting",
        "sent ids not deleted",
        "workflows not ended",
        "HTTP requests not ended",
        "cron jobs without a successful run since the last fault",
    ]) {
        if *n > 0 {
            waiting.push(format!("{n} {what}"));
        }
    }
    waiting
}

fn cron_tally(db: &mut Db, jobids: &[i64], stalled: i64, skipped: i64) -> Tally {
    let row = db.must("cron tally", |c| {
        c.query_one(
            "WITH runs AS (SELECT runid, status FROM pageperfect.job_run_details WHERE jobid = ANY ($1)),
                  ledger AS (SELECT runid, count(*) AS n FROM soak.cron_ledger GROUP BY runid)
             SELECT count(*) FILTER (WHERE r.status <> 'skipped'),
                    count(*) FILTER (WHERE r.status = 'succeeded'),
                    count(*) FILTER (WHERE r.status = 'failed'),
                    $2::bigint,
                    count(*) FILTER (WHERE r.status = 'succeeded' AND l.n IS NULL),
                    count(*) FILTER (WHERE l.n > 1),
                    count(*) FILTER (WHERE r.status = 'skipped' AND l.n IS NOT NULL),
                    count(*) FILTER (WHERE r.status IN ('starting', 'running', 'sending', 'connecting')),
                    count(*) FILTER (WHERE r.status = 'failed' AND l.n = 1),
                    (SELECT count(*) FROM soak.cron_ledger x
                      WHERE x.runid IS NULL OR NOT EXISTS (SELECT FROM runs WHERE runs.runid = x.runid))
               FROM runs r LEFT JOIN ledger l USING (runid)",
            &[&jobids, &skipped],
        )
    });
    let v: Vec<i64> = (0..10).map(|i| row.get(i)).collect();
    let mut tally = Tally { created: v[0], completed: v[1], failed: v[2], ..Tally::default() };
    tally.lost = v[4] + v[9];
    tally.duplicated = v[5] + v[6];
    tally.stuck = v[7] + stalled;
    tally.notes.push(format!("{} ticks skipped (the previous run still going; counted on the job)", v[3]));
    if v[4] > 0 {
        tally.notes.push(format!("LOST: {} runs recorded succeeded wrote no ledger row", v[4]));
    }
    if v[9] > 0 {
        tally.notes.push(format!("LOST: {} ledger rows belong to no recorded run", v[9]));
    }
    if v[5] > 0 {
        tally.notes.push(format!("DUPLICATED: {} runs wrote more than one ledger row", v[5]));
    }
    if v[6] > 0 {
        tally.notes.push(format!("DUPLICATED: {} ticks recorded skipped ran anyway", v[6]));
    }
    if v[7] > 0 {
        tally.notes.push(format!("STUCK: {} runs still starting/running after the settle", v[7]));
    }
    if stalled > 0 {
        tally.notes.push(format!("STUCK: {stalled} jobs never ran successfully after the last fault"));
    }
    if v[8] > 0 {
        tally.notes.push(format!(
            "{} runs recorded failed had committed their insert (the commit raced a crash: at-least-once, not counted)",
            v[8]
        ));
    }
    let messages = db.must("cron failures", |c| {
        c.query(
            "SELECT left(coalesce(return_message, '(none)'), 120), count(*) FROM pageperfect.job_run_details
              WHERE jobid = ANY ($1) AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC",
            &[&jobids],
        )
    });
    for row in messages {
        tally.notes.push(format!("failed runs: {} x {}", row.get::<_, i64>(1), row.get::<_, String>(0)));
    }
    tally
}

fn workflow_tally(db: &mut Db) -> Tally {
    let row = db.must("workflow tally", |c| {
        c.query_one(
            "WITH w AS (SELECT w.token, w.url, w.job_id, j.id AS found, j.status,
                               EXISTS (SELECT FROM pageperfect.dead_letters d
                                        WHERE d.job_id = j.id AND coalesce(d.reason, '') <> '') AS reasoned
                          FROM soak.workflows w LEFT JOIN pageperfect.jobs j ON j.id = w.job_id),
                  per_url AS (SELECT coalesce(a.url, b.url) AS url, coalesce(a.n, 0) AS started, coalesce(b.n, 0) AS jobs
                                FROM (SELECT url, count(*) AS n FROM soak.workflows GROUP BY url) a
                                FULL JOIN (SELECT url, count(*) AS n FROM pageperfect.jobs GROUP BY url) b USING (url))
             SELECT (SELECT count(*) FROM w),
                    (SELECT count(*) FROM w WHERE status = 'completed'),
                    (SELECT count(*) FROM w WHERE status = 'dead' AND reasoned),
                    (SELECT count(*) FROM w WHERE found IS NULL),
                    (SELECT count(*) FROM w WHERE status = 'dead' AND NOT reasoned),
                    (SELECT count(*) FROM w WHERE status NOT IN ('completed', 'dead')),
                    (SELECT count(*) FROM pageperfect.jobs j WHERE NOT EXISTS (SELECT FROM soak.workflows x WHERE x.job_id = j.id)),
                    (SELECT count(*) FROM (SELECT job_id FROM pageperfect.job_events WHERE event = 'job_completed'
                                            GROUP BY job_id HAVING count(*) > 1) d),
                    (SELECT count(*) FROM (SELECT job_id, stage FROM pageperfect.job_events WHERE event = 'completed'
                                            GROUP BY job_id, stage HAVING count(*) > 1) d),
                    (SELECT coalesce(sum(started - jobs), 0)::bigint FROM per_url WHERE started > jobs),
                    (SELECT coalesce(sum(jobs - started), 0)::bigint FROM per_url WHERE jobs > started),
                    (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'pageperfect_pipeline'),
                    (SELECT count(*) FROM pageperfect.job_stages s JOIN pageperfect.jobs j ON j.id = s.job_id
                      WHERE j.status IN ('completed', 'dead') AND s.status IN ('queued', 'processing', 'failed')),
                    (SELECT count(*) FROM pageperfect.job_events WHERE event = 'requeued'),
                    (SELECT count(*) FROM w WHERE status = 'dead' AND url NOT LIKE '%/p/' || $1::text)",
            &[&(MISSING_PAGE as i64).to_string()],
        )
    });
    let v: Vec<i64> = (0..15).map(|i| row.get(i)).collect();
    let mut tally = Tally { created: v[0], completed: v[1], failed: v[2], ..Tally::default() };
    tally.lost = v[3].max(v[9]) + v[4];
    tally.duplicated = v[6].max(v[10]) + v[7] + v[8];
    tally.stuck = v[5] + v[11] + v[12];
    let labels = [
        (3, "LOST: started workflows whose job does not exist"),
        (9, "LOST: fewer jobs than starts, summed over URLs"),
        (4, "LOST: dead jobs without a dead letter giving the reason"),
        (6, "DUPLICATED: jobs nobody started"),
        (10, "DUPLICATED: more jobs than starts, summed over URLs"),
        (7, "DUPLICATED: jobs completed more than once"),
        (8, "DUPLICATED: stages completed more than once"),
        (5, "STUCK: jobs neither completed nor dead"),
        (11, "STUCK: pipeline queue messages left"),
        (12, "STUCK: stages of ended jobs still queued/processing/failed"),
    ];
    for (i, label) in labels {
        if v[i] > 0 {
            tally.notes.push(format!("{label}: {}", v[i]));
        }
    }
    tally.notes.push(format!("{} attempts cut short by faults and requeued", v[13]));
    if v[14] > 0 {
        tally.notes.push(format!("{} jobs of pages that exist ended dead (with a reason)", v[14]));
    }
    let reasons = db.must("dead reasons", |c| {
        c.query(
            "SELECT d.stage || ': ' || left(d.reason || ': ' || coalesce(d.error, ''), 110), count(*)
               FROM pageperfect.dead_letters d JOIN soak.workflows w ON w.job_id = d.job_id GROUP BY 1 ORDER BY 2 DESC LIMIT 6",
            &[],
        )
    });
    for row in reasons {
        tally.notes.push(format!("dead: {} x {}", row.get::<_, i64>(1), row.get::<_, String>(0)));
    }
    tally
}

fn queue_tally(db: &mut Db, shared: &Shared) -> Tally {
    let row = db.must("queue tally", |c| {
        c.query_one(
            "WITH done AS (SELECT id, count(*) AS n FROM soak.done GROUP BY id)
             SELECT (SELECT count(*) FROM soak.sent),
                    (SELECT count(*) FROM done),
                    (SELECT count(*) FROM soak.sent s WHERE NOT EXISTS (SELECT FROM done WHERE done.id = s.id)),
                    (SELECT coalesce(sum(n - 1), 0)::bigint FROM done WHERE n > 1),
                    (SELECT count(*) FROM done WHERE NOT EXISTS (SELECT FROM soak.sent s WHERE s.id = done.id)),
                    (SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'soak'),
                    (SELECT count(*) - count(DISTINCT (message->>'id')) FROM pageperfect.queue_messages WHERE queue_name = 'soak')",
            &[],
        )
    });
    let v: Vec<i64> = (0..7).map(|i| row.get(i)).collect();
    let sent: Vec<i64> = db.must("sent ids", |c| c.query("SELECT id FROM soak.sent", &[]).map(|r| r.iter().map(|r| r.get(0)).collect()));
    let deliveries = shared.deliveries.lock().unwrap();
    let never_delivered = sent.iter().filter(|id| !deliveries.contains_key(id)).count() as i64;
    let delivered_total: u64 = deliveries.values().map(|&n| n as u64).sum();
    let redeliveries = delivered_total - deliveries.len() as u64;
    let mut tally = Tally { created: v[0], completed: v[1], ..Tally::default() };
    tally.lost = v[2].max(never_delivered);
    tally.duplicated = v[3] + v[4];
    tally.stuck = v[5];
    if v[2] > 0 {
        tally.notes.push(format!("LOST: {} sent ids never deleted", v[2]));
    }
    if never_delivered > 0 {
        tally.notes.push(format!("LOST: {never_delivered} sent ids never delivered to a consumer"));
    }
    if v[3] > 0 {
        tally.notes.push(format!("DUPLICATED: {} extra deletions of an id already deleted", v[3]));
    }
    if v[4] > 0 {
        tally.notes.push(format!("DUPLICATED: {} ids deleted that were never recorded sent", v[4]));
    }
    if v[5] > 0 {
        tally.notes.push(format!("STUCK: {} messages left in the queue ({} duplicate ids among them)", v[5], v[6]));
    }
    tally.notes.push(format!(
        "{redeliveries} redeliveries (at-least-once: {} dropped on purpose, {} came back with read_ct > 1)",
        shared.dropped_on_purpose.load(Ordering::Relaxed),
        shared.redelivered_read_ct.load(Ordering::Relaxed)
    ));
    tally
}

fn http_tally(db: &mut Db, hits: &Hits) -> Tally {
    let rows = db.must("http tally", |c| {
        c.query(
            "SELECT h.n, r.id IS NOT NULL, r.status, s.id IS NOT NULL, s.status_code, s.content, s.error_msg, s.timed_out,
                    s.attempts, extract(epoch FROM s.created)::float8
               FROM soak.http h
               LEFT JOIN pageperfect.http_requests r ON r.id = h.req_id
               LEFT JOIN pageperfect.http_responses s ON s.id = h.req_id",
            &[],
        )
    });
    let hits = hits.lock().unwrap();
    let mut tally = Tally { created: rows.len() as i64, ..Tally::default() };
    let (mut missing, mut phantom, mut wrong, mut unreasoned, mut after_store) = (0, 0, 0, 0, 0);
    let (mut resent, mut uncounted, mut unexpected_failures) = (0i64, 0i64, 0);
    let mut examples = Vec::new();
    for row in &rows {
        let n: i64 = row.get(0);
        let path = format!("/h/{n}");
        let seen: &[(f64, u16)] = hits.get(&path).map(Vec::as_slice).unwrap_or(&[]);
        let (has_request, status, has_response): (bool, Option<String>, bool) = (row.get(1), row.get(2), row.get(3));
        let (code, content, error): (Option<i32>, Option<String>, Option<String>) = (row.get(4), row.get(5), row.get(6));
        let (timed_out, attempts, created): (Option<bool>, Option<i32>, Option<f64>) = (row.get(7), row.get(8), row.get(9));
        if !has_request {
            missing += 1;
            continue;
        }
        match status.as_deref() {
            Some("done") => {
                let (Some(code), Some(created)) = (code, created) else {
                    unreasoned += 1;
                    continue;
                };
                tally.completed += 1;
                // The stored answer was given by the server, before it was stored.
                if !seen.iter().any(|&(at, s)| i32::from(s) == code && at <= created) {
                    phantom += 1;
                    examples.push(format!("{path}: stored {code} at {created:.3}, server log {seen:?}"));
                }
                let expected = if n % 100 == 3 { "late".to_string() } else { format!("answer {n}") };
                if code == 200 && content.as_deref() != Some(expected.as_str()) {
                    wrong += 1;
                    examples.push(format!("{path}: stored {content:?}"));
                }
                let late = seen.iter().filter(|&&(at, _)| at > created).count();
                if late > 0 {
                    after_store += late;
                    examples.push(format!("{path}: {late} requests reached the server after the response was stored at {created:.3}: {seen:?}"));
                }
                // A success the server gave whose answer a fault kept from being stored: sent again.
                if n % 100 != 3 && seen.iter().filter(|&&(_, s)| s < 300).count() > 1 {
                    resent += 1;
                }
                uncounted += (seen.len() as i64 - i64::from(attempts.unwrap_or(0))).max(0);
            }
            Some("failed") => {
                if has_response && error.as_deref().is_some_and(|e| !e.is_empty()) {
                    tally.failed += 1;
                    if !(n % 100 == 3 && timed_out == Some(true)) {
                        unexpected_failures += 1;
                        examples.push(format!("{path}: failed: {error:?}"));
                    }
                    if let Some(created) = created {
                        let late = seen.iter().filter(|&&(at, _)| at > created).count();
                        after_store += late;
                    }
                    uncounted += (seen.len() as i64 - i64::from(attempts.unwrap_or(0))).max(0);
                } else {
                    unreasoned += 1;
                }
            }
            _ => tally.stuck += 1,
        }
    }
    tally.lost = missing + phantom + wrong + unreasoned;
    tally.duplicated = after_store as i64;
    let labels = [
        (missing, "LOST: requests whose row is gone"),
        (phantom, "LOST: stored responses the server never gave"),
        (wrong, "LOST: stored responses with another request's body"),
        (unreasoned, "LOST: requests ended without a response row or reason"),
        (after_store as i64, "DUPLICATED: sends after the response was stored"),
        (tally.stuck, "STUCK: requests still pending/in_flight"),
    ];
    for (n, label) in labels {
        if n > 0 {
            tally.notes.push(format!("{label}: {n}"));
        }
    }
    tally.notes.push(format!("{resent} requests answered successfully twice (the answer lost to a fault, sent again: at-least-once)"));
    if uncounted > 0 {
        tally.notes.push(format!("{uncounted} sends the server saw beyond the attempts recorded (not counted)"));
    }
    if unexpected_failures > 0 {
        tally.notes.push(format!("{unexpected_failures} requests failed that the server would have answered (with a reason; not counted)"));
    }
    for example in examples.iter().take(5) {
        tally.notes.push(format!("e.g. {example}"));
    }
    tally
}

/// `--sabotage`: what the count must catch, one of each kind of error per kind of work (a check of
/// the soak's accounting, not of the product).
fn corrupt(db: &mut Db, jobids: &[i64], hits: &Hits) {
    db.must("sabotage", |c| {
        c.execute(
            "WITH ok AS (SELECT runid FROM pageperfect.job_run_details WHERE jobid = ANY ($1) AND status = 'succeeded' ORDER BY runid)
             DELETE FROM soak.cron_ledger WHERE runid = (SELECT min(runid) FROM ok)",
            &[&jobids],
        )?;
        c.execute(
            "INSERT INTO soak.cron_ledger (job, runid) SELECT job, runid FROM soak.cron_ledger WHERE runid = (SELECT max(runid) FROM soak.cron_ledger)",
            &[],
        )?;
        c.execute(
            "UPDATE pageperfect.job_run_details SET status = 'running'
              WHERE runid = (SELECT runid FROM pageperfect.job_run_details WHERE jobid = ANY ($1) AND status = 'succeeded' ORDER BY runid OFFSET 5 LIMIT 1)",
            &[&jobids],
        )?;
        c.batch_execute(
            "INSERT INTO soak.workflows (token, url, job_id) SELECT 'sabotage', url, gen_random_uuid() FROM soak.workflows LIMIT 1;
             INSERT INTO pageperfect.job_events (job_id, stage, event)
                 SELECT job_id, stage, event FROM pageperfect.job_events WHERE event = 'completed' LIMIT 1;
             UPDATE pageperfect.jobs SET status = 'processing' WHERE id = (SELECT id FROM pageperfect.jobs WHERE status = 'completed' LIMIT 1);
             DELETE FROM soak.done WHERE id = (SELECT min(id) FROM soak.done);
             INSERT INTO soak.done SELECT * FROM soak.done WHERE id = (SELECT max(id) FROM soak.done);
             SELECT pageperfect.send('soak', '{\"id\": 0}');
             UPDATE pageperfect.http_requests SET status = 'pending' WHERE id = (SELECT max(req_id) FROM soak.http);",
        )
    });
    let mut hits = hits.lock().unwrap();
    hits.remove("/h/10");
    hits.entry("/h/20".to_string()).or_default().push((epoch(), 200));
}

/// Lines of the server log that say something crashed other than our kill -9s.
fn unexpected_crashes(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            (l.contains("terminated by signal") && !l.contains("signal 9")) || l.contains("PANIC:") || l.contains("was terminated by exception")
        })
        .map(str::to_string)
        .collect()
}

/// The server log's errors and warnings, without timestamp and pid, most frequent first (for
/// the report; they do not fail the run: the faults cause many by design).
fn log_summary(log: &str) -> Vec<(usize, String)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in log.lines() {
        for level in ["PANIC:", "FATAL:", "ERROR:", "WARNING:"] {
            if let Some(at) = line.find(level) {
                let message: String = line[at..].chars().take(150).collect();
                // Numbers (pids, ids, durations) vary; group on the words.
                let key: String = message.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
                *counts.entry(key).or_default() += 1;
                break;
            }
        }
    }
    let mut sorted: Vec<(usize, String)> = counts.into_iter().map(|(k, n)| (n, k)).collect();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    sorted
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: soak [--minutes N] [--seed S] [--sabotage]";
    let (mut minutes, mut seed) = (30.0_f64, epoch().to_bits() ^ u64::from(std::process::id()));
    let mut sabotage = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sabotage" => sabotage = true,
            "--minutes" => minutes = args.next().and_then(|v| v.parse().ok()).filter(|m: &f64| *m > 0.0).expect(usage),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect(usage),
            _ => panic!("{usage}"),
        }
    }
    let seed = seed.max(1);
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let wall = Instant::now();

    let site = web_site();
    let (target, hits) = http_target();
    let models = Arc::new(ModelServer::start());
    let settings = [
        "pageperfect.pipeline_workers = 2".to_string(),
        "pageperfect.crawl_allow_private = on".to_string(),
        "pageperfect.embedding_provider = openai".to_string(),
        format!("pageperfect.embedding_url = '{}'", models.url(model_server::EMBEDDINGS)),
        "pageperfect.llm_provider = openai".to_string(),
        format!("pageperfect.llm_url = '{}'", models.url(model_server::CHAT)),
    ];
    let cluster = Arc::new(Cluster::start("soak", true, &settings.iter().map(String::as_str).collect::<Vec<_>>()));
    let port = cluster.port;
    println!("soak: {minutes} minutes, seed {seed}, cluster on 127.0.0.1:{port}, site {}, HTTP target {}, model server {}", site.base, target.base, models.site.base);

    let mut db = Db::new(port, "soak-main");
    db.must("setup", |c| {
        c.batch_execute(
            "CREATE EXTENSION pageperfect;
             CREATE SCHEMA soak;
             CREATE TABLE soak.cron_ledger (job text NOT NULL, runid bigint, at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON soak.cron_ledger (runid);
             CREATE TABLE soak.workflows (token text PRIMARY KEY, url text NOT NULL, job_id uuid NOT NULL,
                                          at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON soak.workflows (job_id);
             CREATE TABLE soak.sent (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE TABLE soak.done (id bigint NOT NULL, msg_id bigint NOT NULL, consumer int NOT NULL,
                                     at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON soak.done (id);
             CREATE TABLE soak.http (n bigint PRIMARY KEY, req_id bigint NOT NULL, burst int NOT NULL);
             SELECT pageperfect.create_queue('soak');
             UPDATE pageperfect.stage_config SET concurrency = 2;
             UPDATE pageperfect.parameters SET value = '4' WHERE name = 'max_jobs_per_owner';",
        )
    });
    db.must("search console rows", |c| {
        c.execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - d, 'sc-domain:soak', $1 || n, q, 3, imp, pos
               FROM generate_series(0, $2 - 1) n, generate_series(1, 28) d,
                    (VALUES ('brew ratio grams', 120, 8.0), ('brew ratio grams chart', 90, 9.0),
                            ('coarse grind size', 80, 3.0), ('coarse grind size chart', 60, 3.5),
                            ('water temperature coffee', 70, 6.0), ('best water temperature coffee', 50, 6.5)) v (q, imp, pos)",
            &[&site.url("/p/"), &(PAGES as i32)],
        )
    });
    let other_jobs = db.int("SELECT count(*) FROM cron.job");
    assert_eq!(other_jobs, 0, "the fresh cluster has cron jobs of its own: the soak's accounting assumes none");
    let mut jobids = Vec::new();
    for (name, schedule, tail) in CRON_JOBS {
        let command = format!(
            "INSERT INTO soak.cron_ledger (job, runid)
             VALUES ('{name}', substring(current_setting('application_name') from 'run ([0-9]+)$')::bigint){tail}"
        );
        jobids.push(db.must("cron.schedule", |c| c.query_one("SELECT cron.schedule($1, $2, $3)", &[&name, &schedule, &command]).map(|r| r.get::<_, i64>(0))));
    }
    let started = Instant::now();
    let mut healthy = 0;
    while healthy < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "the workers are not healthy after 30 s");
        thread::sleep(Duration::from_millis(200));
        healthy = db.int("SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'healthy'");
    }

    // The load.
    let shared = Arc::new(Shared::default());
    let mut load = Vec::new();
    let mut consumers = Vec::new();
    {
        let (s, base) = (Arc::clone(&shared), site.base.clone());
        load.push(thread::spawn(move || workflow_starter(port, base, s)));
    }
    for p in 1..=2 {
        let s = Arc::clone(&shared);
        load.push(thread::spawn(move || producer(port, p, s, seed.wrapping_add(p as u64))));
    }
    for c in 1..=2 {
        let s = Arc::clone(&shared);
        consumers.push(thread::spawn(move || consumer(port, c, s, seed.wrapping_add(10 + c as u64))));
    }
    {
        let (s, base) = (Arc::clone(&shared), target.base.clone());
        load.push(thread::spawn(move || http_bursts(port, base, s)));
    }
    {
        let (s, m) = (Arc::clone(&shared), Arc::clone(&models));
        load.push(thread::spawn(move || model_faults(m, s, seed.wrapping_add(20))));
    }
    {
        let s = Arc::clone(&shared);
        load.push(thread::spawn(move || lock_holder(port, s)));
    }
    {
        let (s, cl) = (Arc::clone(&shared), Arc::clone(&cluster));
        load.push(thread::spawn(move || fault_loop(cl, s, duration, seed.wrapping_add(30))));
    }

    let run_start = Instant::now();
    let mut next_report = Duration::from_secs(30);
    while run_start.elapsed() < duration {
        thread::sleep(Duration::from_millis(200).min(duration.saturating_sub(run_start.elapsed())));
        if run_start.elapsed() >= next_report {
            println!("[{:>5.0}s] {}", run_start.elapsed().as_secs_f64(), progress(&mut db, &jobids));
            next_report += Duration::from_secs(30);
        }
    }
    println!("[{:>5.0}s] load stopped; settling (at most {} s)", run_start.elapsed().as_secs_f64(), SETTLE.as_secs());
    shared.stop_load.store(true, Ordering::SeqCst);
    let mut thread_failures = Vec::new();
    for handle in load {
        if let Err(panic) = handle.join() {
            thread_failures.push(panic_text(panic));
        }
    }

    // The settle: consumers drain, workflows and requests end, every cron job runs again.
    let settle_start = Instant::now();
    let mut next_report = settle_start + Duration::from_secs(30);
    let mut waiting;
    loop {
        let last_recovery = *shared.last_recovery.lock().unwrap();
        waiting = unsettled(&mut db, &jobids, last_recovery);
        if waiting.is_empty() || settle_start.elapsed() >= SETTLE {
            break;
        }
        if Instant::now() >= next_report {
            println!("[{:>5.0}s] settling: {}", run_start.elapsed().as_secs_f64(), waiting.join(", "));
            next_report += Duration::from_secs(30);
        }
        thread::sleep(Duration::from_millis(500));
    }
    let last_recovery = *shared.last_recovery.lock().unwrap();
    let stalled = db.must("stalled jobs", |c| {
        c.query_one(
            "SELECT count(*) FROM unnest($1::bigint[]) j (jobid)
              WHERE NOT EXISTS (SELECT FROM pageperfect.job_run_details d
                                 WHERE d.jobid = j.jobid AND d.status = 'succeeded' AND d.start_time > to_timestamp($2))",
            &[&jobids, &last_recovery],
        )
        .map(|r| r.get::<_, i64>(0))
    });
    // Counted on the jobs, which go with them: read it first.
    let skipped = db.int(&format!(
        "SELECT coalesce(sum(skipped_runs), 0)::bigint FROM pageperfect.job WHERE jobid IN ({})",
        jobids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    ));
    // Unschedule, then give the runs in progress (1.5 s at most) time to end.
    db.must("unschedule", |c| c.execute("SELECT count(cron.unschedule(jobname)) FROM cron.job WHERE jobname LIKE 'soak-%'", &[]));
    let grace = Instant::now();
    while grace.elapsed() < Duration::from_secs(15) {
        let active = db.must("active runs", |c| {
            c.query_one(
                "SELECT count(*) FROM pageperfect.job_run_details WHERE jobid = ANY ($1) AND status IN ('starting', 'running', 'sending', 'connecting')",
                &[&jobids],
            )
            .map(|r| r.get::<_, i64>(0))
        });
        if active == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    shared.stop_consumers.store(true, Ordering::SeqCst);
    for handle in consumers {
        if let Err(panic) = handle.join() {
            thread_failures.push(panic_text(panic));
        }
    }
    let settled_in = settle_start.elapsed();
    println!(
        "[{:>5.0}s] {} after {:.0} s of settling",
        run_start.elapsed().as_secs_f64(),
        if waiting.is_empty() { "settled".to_string() } else { format!("NOT settled ({})", waiting.join(", ")) },
        settled_in.as_secs_f64()
    );

    if sabotage {
        println!("--sabotage: corrupting records of every kind, so the count below must fail");
        corrupt(&mut db, &jobids, &hits);
    }

    // The count.
    let tallies = [
        ("cron runs", cron_tally(&mut db, &jobids, stalled, skipped)),
        ("workflows", workflow_tally(&mut db)),
        ("queue messages", queue_tally(&mut db, &shared)),
        ("http requests", http_tally(&mut db, &hits)),
    ];
    let faults = shared.faults.lock().unwrap().clone();
    let server_log = cluster.log();
    let crashes = unexpected_crashes(&server_log);
    let fault_problems = shared.fault_problems.lock().unwrap().clone();

    println!();
    println!("faults: {} ({})", faults.len(), faults.iter().map(|(at, what)| format!("{at:.0}s {what}")).collect::<Vec<_>>().join("; "));
    println!("model server faults injected: {}", shared.model_faults.load(Ordering::Relaxed));
    println!(
        "client statements retried after a crash: {}; commits a crash hid, confirmed by the retry: {}",
        shared.retries.load(Ordering::Relaxed) + db.retries,
        shared.confirmed_by_retry.load(Ordering::Relaxed)
    );
    for (error, n) in shared.client_errors.lock().unwrap().iter() {
        println!("client error (not a crash) x {n}: {error}");
    }
    println!();
    println!("{:<16} {:>9} {:>10} {:>8} {:>6} {:>11} {:>6}", "work", "created", "completed", "failed", "lost", "duplicated", "stuck");
    let mut bad = 0;
    for (kind, t) in &tallies {
        println!("{kind:<16} {:>9} {:>10} {:>8} {:>6} {:>11} {:>6}", t.created, t.completed, t.failed, t.lost, t.duplicated, t.stuck);
        bad += t.lost + t.duplicated + t.stuck;
    }
    println!("(failed: ended for good with a recorded reason — a dead letter, a failed request, a failed cron run)");
    println!();
    for (kind, t) in &tallies {
        for note in &t.notes {
            println!("{kind}: {note}");
        }
    }
    let summary = log_summary(&server_log);
    println!();
    println!("server log: {} distinct errors and warnings (by design, the faults cause some){}", summary.len(), if summary.len() > 12 { "; the 12 most frequent:" } else { ":" });
    for (n, message) in summary.iter().take(12) {
        println!("  {n:>5} x {message}");
    }
    for line in &crashes {
        println!("server log, UNEXPECTED: {line}");
    }
    for problem in fault_problems.iter().chain(&thread_failures) {
        println!("problem: {problem}");
    }
    println!();
    println!("wall time {:.0} s (load {:.0} s, settle {:.0} s)", wall.elapsed().as_secs_f64(), duration.as_secs_f64(), settled_in.as_secs_f64());
    let failed = bad > 0 || !crashes.is_empty() || !fault_problems.is_empty() || !thread_failures.is_empty();
    if failed {
        // A panic: the cluster's directory (data and server.log) is kept for inspection.
        panic!("soak FAILED: {bad} lost/duplicated/stuck, {} unexpected crashes, {} other problems", crashes.len(), fault_problems.len() + thread_failures.len());
    }
    println!("soak PASSED: nothing lost, duplicated or stuck");
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a thread panicked".to_string())
}
