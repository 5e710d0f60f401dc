//! `bench-pipeline [PAGES] [LATENCY_MS] [CONCURRENCY]`: pages per minute through the whole PagePerfect workflow
//! (crawl, segment and embed, keyword clustering, gap analysis, draft) on a preloaded cluster,
//! against a loopback site and a loopback OpenAI-compatible model server that both answer after
//! LATENCY_MS (default 1,000 pages, 20 ms), with every stage's concurrency set to CONCURRENCY
//! (default: as installed, 1). Each page has 28 days of Search Console rows for eight queries in
//! four topics, most of which the page lacks. Prints one line per 10% and a summary.

use pageperfect_it::model_server::{self, ModelServer};
use pageperfect_it::site::{Route, Site};
use pageperfect_it::Cluster;
use std::time::{Duration, Instant};

const TOPICS: [(&str, &str); 4] = [
    ("French press", "Use a coarse grind and pour water just off the boil over the grounds, then plunge slowly."),
    ("Pour-over", "Rinse the paper filter, bloom the coffee for forty seconds and pour in slow spirals."),
    ("Cold brew", "Steep coarse coffee in cold water for twelve to eighteen hours, then strain it twice."),
    ("Espresso", "Dose eighteen grams, yield thirty-six grams and aim for a shot time of twenty-eight seconds."),
];

fn page(n: usize) -> String {
    let (topic, body) = TOPICS[n % TOPICS.len()];
    format!(
        "<!doctype html><html><head><title>{topic} guide #{n}</title></head><body>\
         <nav><a href='/'>Home</a> <a href='/shop'>Shop</a></nav><main><h1>{topic} guide #{n}</h1>\
         <p>{body}</p><h2>Equipment</h2><p>A scale, a grinder and a kettle make every {topic} brew repeatable.</p>\
         <h2>Troubleshooting</h2><p>Sour coffee means under-extraction: grind finer. Bitter coffee means over-extraction: grind coarser.</p>\
         <ul><li>Weigh the coffee and the water.</li><li>Time every brew.</li></ul></main>\
         <footer>Copyright 2026</footer></body></html>"
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pages: usize = args.next().map_or(1_000, |a| a.parse().expect("PAGES must be a number"));
    let latency = Duration::from_millis(args.next().map_or(20, |a| a.parse().expect("LATENCY_MS must be a number")));
    let concurrency: Option<i32> = args.next().map(|a| a.parse().expect("CONCURRENCY must be a number"));

    let site = Site::with_handler(move |request| {
        let route = match request.path.as_str() {
            "/robots.txt" => Route::status(200, "text/plain", "User-agent: *\nAllow: /\n"),
            path => match path.strip_prefix("/page/").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => Route::html(&page(n)),
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
    if let Some(concurrency) = concurrency {
        client.execute("UPDATE pageperfect.stage_config SET concurrency = $1", &[&concurrency]).unwrap();
    }
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

    let started = Instant::now();
    client.execute("SELECT count(pageperfect.run_workflow($1 || n)) FROM generate_series(0, $2 - 1) n", &[&site.url("/page/"), &(pages as i32)]).unwrap();
    let mut reported = 0;
    let (completed, dead) = loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'dead') FROM pageperfect.jobs",
                &[],
            )
            .unwrap();
        let (completed, dead): (i64, i64) = (row.get(0), row.get(1));
        let done = (completed + dead) as usize;
        if done * 10 / pages > reported {
            reported = done * 10 / pages;
            println!("{:>6.1} s  {done} of {pages} pages done", started.elapsed().as_secs_f64());
        }
        if done == pages {
            break (completed, dead);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed().as_secs_f64();
    let drafts: i64 = client.query_one("SELECT count(*) FROM pageperfect.rewrite_drafts WHERE provider = 'openai'", &[]).unwrap().get(0);
    println!(
        "pipeline: {pages} pages in {elapsed:.1} s = {:.0} pages/minute ({completed} completed, {dead} dead, {drafts} drafts; \
         site and model server answering after {} ms; stage concurrency {})",
        pages as f64 * 60.0 / elapsed,
        latency.as_millis(),
        concurrency.map_or("as installed".to_string(), |c| c.to_string()),
    );
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
}
