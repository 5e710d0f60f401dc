//! Polite crawling against loopback sites on 127.0.0.2, .3, …, which the crawler counts as
//! different hosts: one request at a time per host however many of its pages wait, a slow host
//! holding up only itself, and a site's robots.txt `Crawl-delay` spacing its pages, up to the cap.

use pageperfect_it::site::{guide_page, Route, Site};
use pageperfect_it::{count, wait_for, Cluster};
use postgres::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A site whose pages take `latency` to answer, with `robots` as its robots.txt. It records when
/// each page request came and the most page requests it had in flight at once.
struct Host {
    site: Site,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Host {
    fn start(n: u8, latency: Duration, robots: &'static str) -> Host {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (recorded, most) = (Arc::clone(&arrivals), Arc::clone(&most_in_flight));
        let site = Site::on_host(n, move |request| {
            if request.path == "/robots.txt" {
                return Route::status(200, "text/plain", robots);
            }
            recorded.lock().unwrap().push(Instant::now());
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(latency);
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Route::html(&guide_page(usize::from(n)))
        });
        Host { site, arrivals, most_in_flight }
    }

    fn page(&self, n: usize) -> String {
        self.site.url(&format!("/page/{n}"))
    }

    /// Seconds between the arrivals of consecutive page requests.
    fn gaps(&self) -> Vec<f64> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    }
}

/// Queues a crawl-only job for each URL, in the order given.
fn crawl_all(client: &mut Client, urls: &[String]) {
    client.execute("SELECT count(pageperfect.enqueue_job(u, ARRAY['submit_crawl'])) FROM unnest($1::text[]) u", &[&urls]).unwrap();
}

fn completed_of(client: &mut Client, host: &Host) -> i64 {
    let prefix = format!("{}%", host.site.base);
    client
        .query_one("SELECT count(*) FROM pageperfect.jobs WHERE url LIKE $1 AND status = 'completed'", &[&prefix])
        .unwrap()
        .get(0)
}

fn cluster() -> (Cluster, Client) {
    let (cluster, mut client) = Cluster::with_extension("crawling", &["pageperfect.crawl_allow_private = on"]);
    // One owner queues every page here; its job limit is not what is tested.
    client.batch_execute("UPDATE pageperfect.parameters SET value = '100' WHERE name = 'max_jobs_per_owner'").unwrap();
    (cluster, client)
}

#[test]
fn one_request_at_a_time_per_host_and_a_slow_host_holds_up_only_itself() {
    let (_cluster, mut client) = cluster();
    let slow = Host::start(5, Duration::from_millis(1500), "User-agent: *\nAllow: /\n");
    let fast: Vec<Host> = (2..=4).map(|n| Host::start(n, Duration::from_millis(100), "User-agent: *\nAllow: /\n")).collect();
    // The slow host's pages first: a first-come queue would give them every crawl slot (4).
    let mut urls: Vec<String> = (0..4).map(|n| slow.page(n)).collect();
    urls.extend(fast.iter().flat_map(|host| (0..8).map(|n| host.page(n))));
    crawl_all(&mut client, &urls);

    wait_for(Duration::from_secs(60), "the fast hosts' 24 pages", || {
        (fast.iter().map(|host| completed_of(&mut client, host)).sum::<i64>() == 24).then_some(())
    });
    let slow_done = completed_of(&mut client, &slow);
    assert!(slow_done < 4, "the fast hosts' pages waited for the slow host's ({slow_done} of 4 were done)");
    wait_for(Duration::from_secs(60), "the slow host's 4 pages", || (completed_of(&mut client, &slow) == 4).then_some(()));

    for host in fast.iter().chain([&slow]) {
        assert_eq!(host.most_in_flight.load(Ordering::SeqCst), 1, "{} had more than one request at a time", host.site.base);
    }
    // One at a time: each of the slow host's pages came after the previous one was answered.
    assert!(slow.gaps().iter().all(|gap| *gap >= 1.4), "slow host gaps: {:?}", slow.gaps());
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status <> 'completed'"), 0);
}

#[test]
fn a_sites_crawl_delay_spaces_its_pages_up_to_the_cap_without_holding_up_other_sites() {
    let (_cluster, mut client) = cluster();
    // It asks for 100 s; the cap (crawl_delay_max_seconds) makes it 1.5.
    client.batch_execute("UPDATE pageperfect.parameters SET value = '1.5' WHERE name = 'crawl_delay_max_seconds'").unwrap();
    let delayed = Host::start(6, Duration::ZERO, "User-agent: *\nCrawl-delay: 100\n\nUser-agent: otherbot\nCrawl-delay: 1\n");
    let brisk = Host::start(7, Duration::ZERO, "User-agent: *\nDisallow: /private\n");
    let mut urls: Vec<String> = (0..4).map(|n| delayed.page(n)).collect();
    urls.extend((0..4).map(|n| brisk.page(n)));
    crawl_all(&mut client, &urls);

    wait_for(Duration::from_secs(60), "every page", || {
        (completed_of(&mut client, &delayed) + completed_of(&mut client, &brisk) == 8).then_some(())
    });
    let gaps = delayed.gaps();
    assert_eq!(gaps.len(), 3);
    assert!(gaps.iter().all(|gap| (1.4..4.0).contains(gap)), "Crawl-delay 100 capped at 1.5 s: gaps {gaps:?}");
    // The other site was not held up: all its pages came before the delayed site's second.
    let delayed_second = delayed.arrivals.lock().unwrap()[1];
    assert!(brisk.arrivals.lock().unwrap().iter().all(|at| *at < delayed_second), "the brisk site waited for the delayed one");
    let (host, delay): (String, Option<f64>) = {
        let row = client.query_one("SELECT host, crawl_delay_seconds FROM pageperfect.host_politeness WHERE host = '127.0.0.6'", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((host.as_str(), delay), ("127.0.0.6", Some(100.0)));
}
