//! pageperfect-web: watch and steer pageperfect without psql. It serves the PagePerfect guides'
//! scheduler API and trigger endpoints (`api`), a server-rendered dashboard (`dashboard`), the
//! SEO insights (`insights`) and Prometheus metrics (`metrics`), connected to Postgres as one configured role, so that
//! row-level security decides what it sees; tokens are cron secrets (`auth`).
//!
//!     pageperfect-web --database-url postgres://web@127.0.0.1/postgres --listen 127.0.0.1:8080

mod api;
mod auth;
mod dashboard;
mod db;
mod insights;
mod metrics;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Parser, Debug)]
#[command(name = "pageperfect-web", version, about = "pageperfect's dashboard, scheduler API and Prometheus metrics")]
pub struct Config {
    /// The database to connect to, as the role whose jobs and queues it shows (libpq URL or
    /// key=value string). It needs no superuser: see README, "The web dashboard and API".
    #[arg(long, env = "PAGEPERFECT_WEB_DATABASE_URL")]
    database_url: String,
    /// Address and port to listen on. Only loopback addresses unless --allow-remote.
    #[arg(long, env = "PAGEPERFECT_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve on a non-loopback address (put TLS in front of it: tokens travel in headers).
    #[arg(long, env = "PAGEPERFECT_WEB_ALLOW_REMOTE")]
    allow_remote: bool,
    /// The cron secret (pageperfect.set_cron_secret) whose value is the bearer token of the API,
    /// the dashboard's login and /metrics.
    #[arg(long, env = "PAGEPERFECT_WEB_SECRET_NAME", default_value = "pageperfect-web")]
    secret_name: String,
    /// Read-only: show everything, change nothing (no toggles, runs, retries, workflows, triggers).
    #[arg(long, env = "PAGEPERFECT_WEB_READ_ONLY")]
    read_only: bool,
    /// Most connections to the database.
    #[arg(long, env = "PAGEPERFECT_WEB_POOL_SIZE", default_value_t = 8)]
    pool_size: usize,
}

/// What every handler shares.
pub struct App {
    pub config: Config,
    pub pool: deadpool_postgres::Pool,
    pub auth: auth::Auth,
    /// Answers given, by status code (`pageperfect_http_requests_total`).
    pub http_requests: Mutex<BTreeMap<u16, u64>>,
}

async fn count_answers(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    *app.http_requests.lock().unwrap().entry(response.status().as_u16()).or_default() += 1;
    response
}

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route("/", get(dashboard::page))
        .route("/insights", get(insights::page))
        .route("/login", post(dashboard::login))
        .route("/logout", post(dashboard::logout))
        .route("/ui/action", post(dashboard::action))
        .route("/api/scheduler", get(api::scheduler).post(api::scheduler))
        .route("/api/cron/webhook", post(api::webhook))
        .route("/metrics", get(metrics::metrics));
    for (path, _) in api::TRIGGER_SECRETS.iter().filter(|(path, _)| path.starts_with("/functions/")) {
        router = router.route(path, post(api::trigger));
    }
    router.layer(middleware::from_fn_with_state(app.clone(), count_answers)).with_state(app)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let config = Config::parse();
    if !config.listen.ip().is_loopback() && !config.allow_remote {
        eprintln!(
            "pageperfect-web: refusing to listen on {} (not a loopback address); add --allow-remote (PAGEPERFECT_WEB_ALLOW_REMOTE=true) to serve it",
            config.listen
        );
        std::process::exit(2);
    }
    if config.secret_name.trim().is_empty() {
        eprintln!("pageperfect-web: --secret-name must not be empty");
        std::process::exit(2);
    }
    let pool = db::pool(&config.database_url, config.pool_size).unwrap_or_else(|e| {
        eprintln!("pageperfect-web: {e}");
        std::process::exit(2);
    });
    // Fail at start, with the reason, when the database or the extension is not there.
    if let Err(failure) = db::one_value(&pool, "SELECT to_jsonb(pageperfect.get_cron_job_status()::text)", &[]).await {
        eprintln!("pageperfect-web: cannot use pageperfect in that database: {}", failure.message);
        std::process::exit(1);
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap_or_else(|e| {
        eprintln!("pageperfect-web: cannot listen on {}: {e}", config.listen);
        std::process::exit(1);
    });
    let address = listener.local_addr().expect("local address");
    let read_only = if config.read_only { " (read-only)" } else { "" };
    let app = Arc::new(App { config, pool, auth: auth::Auth::new(), http_requests: Mutex::new(BTreeMap::new()) });
    println!("pageperfect-web listening on http://{address}/{read_only}");
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown_signal()).await.expect("server failed");
}
