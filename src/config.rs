//! Every `pageperfect.*` setting (GUC), defined once in `_PG_init`.
//!
//! Settings the workers read are `SUSET` (superusers can set them per session, per database or
//! per role, and in `postgresql.conf`) unless changing them needs a restart (`database_name`,
//! `pipeline_workers`, and `max_running_jobs`, which sizes shared memory as pg_cron's does).
//! Secrets (`api_key`, `crawl_api_key`) are superuser-only: other roles can
//! neither read them with `SHOW`/`current_setting()` nor see them in `pg_settings`, and they are
//! refused per database, per role and per function, whose values every role can read.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Which embedder turns text into vectors.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EmbeddingProvider {
    #[name = c"local"]
    Local,
    #[name = c"openai"]
    OpenAi,
}

/// Which drafter writes rewrite drafts.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LlmProvider {
    #[name = c"local"]
    Local,
    #[name = c"openai"]
    OpenAi,
}

/// Which field of a chat completion request limits the answer's length: `max_tokens` (most
/// servers; a server that refuses it is asked again with the other, once per worker), or
/// `max_completion_tokens` (OpenAI's reasoning models, which also refuse a temperature).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LlmTokenLimit {
    #[name = c"max_tokens"]
    MaxTokens,
    #[name = c"max_completion_tokens"]
    MaxCompletionTokens,
}

/// Which finished cron runs keep their `job_run_details` row (pg_cron's `cron.log_run`, with
/// the middle ground its users ask for).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunLog {
    #[name = c"all"]
    All,
    #[name = c"failures"]
    Failures,
    #[name = c"off"]
    Off,
}

/// How pages are fetched: directly, or through a scraping API that can render JavaScript.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrawlProvider {
    #[name = c"direct"]
    Direct,
    #[name = c"scraper_api"]
    ScraperApi,
}

pub static DATABASE_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"UTC"));
pub static MAX_RUNNING_JOBS: GucSetting<i32> = GucSetting::<i32>::new(32);
pub static PIPELINE_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static HTTP_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(16);
pub static EMBEDDING_PROVIDER: GucSetting<EmbeddingProvider> =
    GucSetting::<EmbeddingProvider>::new(EmbeddingProvider::Local);
pub static EMBEDDING_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://api.openai.com/v1/embeddings"));
pub static EMBEDDING_MODEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"text-embedding-3-small"));
/// 0: the model's own (the `openai` provider sends no `dimensions`; `local` makes 384).
pub static EMBEDDING_DIMENSIONS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static EMBEDDING_BATCH_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(8192);
pub static LLM_TOKEN_LIMIT: GucSetting<LlmTokenLimit> = GucSetting::<LlmTokenLimit>::new(LlmTokenLimit::MaxTokens);
pub static LLM_PROVIDER: GucSetting<LlmProvider> = GucSetting::<LlmProvider>::new(LlmProvider::Local);
pub static LLM_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://api.openai.com/v1/chat/completions"));
pub static LLM_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"gpt-4o-mini"));
pub static API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CRAWL_USER_AGENT: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"pageperfect/0.1"));
pub static CRAWL_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(15_000);
pub static CRAWL_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(5 * 1024 * 1024);
pub static MAX_COMMAND_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
pub static WORKER_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static WORKER_STATEMENT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
pub static MAX_FRAGMENTS_PER_PAGE: GucSetting<i32> = GucSetting::<i32>::new(2000);
pub static DBSCAN_THREADS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static HTTP_MAX_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub static LAUNCH_ACTIVE_JOBS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static RUN_LOG: GucSetting<RunLog> = GucSetting::<RunLog>::new(RunLog::All);
/// pg_net's settings, defined here when pg_net itself is not preloaded (see `define_pg_net_gucs`).
pub static PG_NET_TTL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"6 hours"));
pub static PG_NET_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(200);
pub static PG_NET_USERNAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PG_NET_DATABASE_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static LOG_STATEMENT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ENABLE_SUPERUSER_JOBS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static CRAWL_ALLOW_PRIVATE: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static HTTP_ALLOW_PRIVATE: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static CRAWL_PROVIDER: GucSetting<CrawlProvider> = GucSetting::<CrawlProvider>::new(CrawlProvider::Direct);
pub static CRAWL_API_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CRAWL_API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ALERT_WEBHOOK_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static GSC_API_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://searchconsole.googleapis.com/webmasters/v3"));
pub static GSC_TOKEN_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The value of a string setting, or `None` when it is unset or empty.
pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty())
}

/// Who may change a setting and who may see it.
#[derive(Clone, Copy)]
enum Scope {
    /// Read by the postmaster when it starts the workers: changing it needs a restart.
    Restart,
    /// Superusers set it anywhere (postgresql.conf, ALTER SYSTEM/DATABASE/ROLE, SET).
    Superuser,
    /// Like `Superuser`, and no other role can read it, nor see it in `pg_settings`.
    Secret,
}

impl Scope {
    fn context(self) -> GucContext {
        match self {
            Scope::Restart => GucContext::Postmaster,
            Scope::Superuser | Scope::Secret => GucContext::Suset,
        }
    }

    fn flags(self) -> GucFlags {
        match self {
            Scope::Secret => GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
            Scope::Restart | Scope::Superuser => GucFlags::default(),
        }
    }
}

type StringGuc = (&'static CStr, &'static CStr, &'static GucSetting<Option<CString>>, Scope);
type IntGuc = (&'static CStr, &'static CStr, &'static GucSetting<i32>, i32, i32, Scope);

/// pg_net 0.20's settings, so that a configuration written for pg_net keeps working: `ttl` is how
/// long responses are kept (cleanup deletes older ones), `batch_size` how many requests a
/// pipeline worker takes at once. `username` and `database_name` are accepted and shown, but the
/// requests live in pageperfect's database and its workers send them (docs/compat.md). Only
/// when pg_net is not preloaded: then the names are pg_net's own.
fn define_pg_net_gucs() {
    let preloads_pg_net = unsafe {
        let libraries = pg_sys::GetConfigOption(c"shared_preload_libraries".as_ptr(), true, false);
        !libraries.is_null()
            && CStr::from_ptr(libraries).to_string_lossy().split(',').any(|library| library.trim().trim_matches('"') == "pg_net")
    };
    if preloads_pg_net {
        return;
    }
    GucRegistry::define_string_guc(c"pg_net.ttl", c"time to live for request/response rows", c"should be a valid interval type", &PG_NET_TTL, GucContext::Sighup, GucFlags::default());
    GucRegistry::define_int_guc(
        c"pg_net.batch_size",
        c"number of requests executed in one iteration of the background worker",
        c"",
        &PG_NET_BATCH_SIZE,
        0,
        32767,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(c"pg_net.username", c"Connection user for the worker", c"", &PG_NET_USERNAME, GucContext::SuBackend, GucFlags::default());
    GucRegistry::define_string_guc(c"pg_net.database_name", c"Database where the worker will connect to", c"", &PG_NET_DATABASE_NAME, GucContext::SuBackend, GucFlags::default());
}

/// Registers the settings. Called from `_PG_init` in the postmaster (`preloading`) and in any
/// backend that loads the library later. Postgres forbids defining restart-only settings after
/// startup, and they mean nothing without the preloaded workers, so a late load leaves them as
/// plain placeholders (still readable with `current_setting`).
pub fn define_gucs(preloading: bool) {
    use Scope::*;
    let wanted = |scope: Scope| preloading || !matches!(scope, Restart);
    define_pg_net_gucs();
    let strings: [StringGuc; 13] = [
        (c"pageperfect.database_name", c"Database the pageperfect background workers attach to.", &DATABASE_NAME, Restart),
        (c"pageperfect.timezone", c"Time zone in which cron schedules are interpreted.", &TIMEZONE, Superuser),
        (c"pageperfect.embedding_url", c"URL of the OpenAI-compatible /v1/embeddings endpoint.", &EMBEDDING_URL, Superuser),
        (c"pageperfect.embedding_model", c"Model name sent to the embeddings endpoint.", &EMBEDDING_MODEL, Superuser),
        (c"pageperfect.llm_url", c"URL of the OpenAI-compatible /v1/chat/completions endpoint.", &LLM_URL, Superuser),
        (c"pageperfect.llm_model", c"Model name sent to the chat completions endpoint.", &LLM_MODEL, Superuser),
        (c"pageperfect.api_key", c"API key for the openai providers (the postmaster's OPENAI_API_KEY also works).", &API_KEY, Secret),
        (c"pageperfect.crawl_user_agent", c"User-Agent header of the crawler.", &CRAWL_USER_AGENT, Superuser),
        (c"pageperfect.crawl_api_url", c"URL of the scraping API used when crawl_provider = scraper_api.", &CRAWL_API_URL, Superuser),
        (c"pageperfect.crawl_api_key", c"Key of the scraping API.", &CRAWL_API_KEY, Secret),
        (c"pageperfect.alert_webhook_url", c"Slack-style webhook that receives new monitoring alerts.", &ALERT_WEBHOOK_URL, Superuser),
        (c"pageperfect.gsc_api_url", c"Base URL of the Search Console API.", &GSC_API_URL, Superuser),
        (c"pageperfect.gsc_token_url", c"OAuth token endpoint overriding the service account's token_uri.", &GSC_TOKEN_URL, Superuser),
    ];
    for (name, description, setting, scope) in strings.into_iter().filter(|g| wanted(g.3)) {
        let check_hook: pg_sys::GucStringCheckHook = match scope {
            Secret => Some(refuse_stored_secret),
            Restart | Superuser => None,
        };
        // SAFETY: the hook is #[pg_guard]ed and only reads its arguments.
        unsafe {
            GucRegistry::define_string_guc_with_hooks(
                name,
                description,
                c"",
                setting,
                scope.context(),
                scope.flags(),
                check_hook,
                None,
                None,
            )
        };
    }

    // Without the preload a value from the server's configuration sits in a placeholder, which
    // any role can SHOW, until a session loads this library; only the preload closes that.
    if !preloading && (string(&API_KEY).is_some() || string(&CRAWL_API_KEY).is_some()) {
        ereport!(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            "pageperfect's secret settings are set but pageperfect is not in shared_preload_libraries",
            "Until a session loads pageperfect, any role can read them with SHOW; preload it (the workers that use them need it anyway)."
        );
    }

    let ints: [IntGuc; 13] = [
        (c"pageperfect.max_running_jobs", c"Most cron job runs in progress at once (each needs a max_worker_processes slot).", &MAX_RUNNING_JOBS, 1, 1024, Restart),
        (c"pageperfect.pipeline_workers", c"Number of pipeline workers started with the server.", &PIPELINE_WORKERS, 0, crate::wakeup::MAX_PIPELINE_WORKERS as i32, Restart),
        (c"pageperfect.http_concurrency", c"Most HTTP requests each pipeline worker has in flight.", &HTTP_CONCURRENCY, 1, 1024, Superuser),
        (c"pageperfect.embedding_dimensions", c"Dimensions of the embedding vectors; 0: the model's own (openai sends none; local makes 384).", &EMBEDDING_DIMENSIONS, 0, 8192, Superuser),
        (c"pageperfect.embedding_batch_tokens", c"Most tokens (estimated as characters / 4) of texts in one embeddings request.", &EMBEDDING_BATCH_TOKENS, 256, 1_000_000, Superuser),
        (c"pageperfect.crawl_timeout_ms", c"Timeout of one page fetch, in milliseconds.", &CRAWL_TIMEOUT_MS, 100, 600_000, Superuser),
        (c"pageperfect.crawl_max_bytes", c"Largest page body the crawler reads, in bytes.", &CRAWL_MAX_BYTES, 1024, i32::MAX, Superuser),
        (c"pageperfect.max_command_bytes", c"Longest cron job command, in bytes.", &MAX_COMMAND_BYTES, 1024, 64 * 1024 * 1024, Superuser),
        (c"pageperfect.worker_lock_timeout_ms", c"lock_timeout of the workers' own transactions, in milliseconds (not of job commands).", &WORKER_LOCK_TIMEOUT_MS, 1, 600_000, Superuser),
        (c"pageperfect.worker_statement_timeout_ms", c"statement_timeout of the workers' own transactions, in milliseconds (not of job commands).", &WORKER_STATEMENT_TIMEOUT_MS, 100, 3_600_000, Superuser),
        (c"pageperfect.max_fragments_per_page", c"Most headings, paragraphs and list items segment_embed keeps of one page.", &MAX_FRAGMENTS_PER_PAGE, 1, 1_000_000, Superuser),
        (c"pageperfect.dbscan_threads", c"Most threads (cores) one DBSCAN uses: keyword clustering and pageperfect.dbscan_cosine, as max_parallel_workers_per_gather bounds a query's workers.", &DBSCAN_THREADS, 1, 16, Superuser),
        (c"pageperfect.http_max_timeout_ms", c"Largest timeout_milliseconds a net.http_* request may ask for.", &HTTP_MAX_TIMEOUT_MS, 1000, 3_600_000, Superuser),
    ];
    for (name, description, setting, min, max, scope) in ints.into_iter().filter(|g| wanted(g.5)) {
        GucRegistry::define_int_guc(name, description, c"", setting, min, max, scope.context(), scope.flags());
    }

    let bools: [(&CStr, &CStr, &GucSetting<bool>); 5] = [
        (c"pageperfect.launch_active_jobs", c"Start cron runs (off: the scheduler pauses; runs in progress finish, queued ones wait), as pg_cron's cron.launch_active_jobs.", &LAUNCH_ACTIVE_JOBS),
        (c"pageperfect.log_statement", c"Log each cron run's command before it runs and its result after, as pg_cron's cron.log_statement.", &LOG_STATEMENT),
        (c"pageperfect.enable_superuser_jobs", c"Allow cron jobs that run as a superuser, as pg_cron's cron.enable_superuser_jobs.", &ENABLE_SUPERUSER_JOBS),
        (c"pageperfect.crawl_allow_private", c"Let the crawler fetch loopback, private and link-local addresses (off: SSRF guard).", &CRAWL_ALLOW_PRIVATE),
        (c"pageperfect.http_allow_private", c"Let non-superusers' net.http_* requests reach loopback, private and link-local addresses (off: SSRF guard).", &HTTP_ALLOW_PRIVATE),
    ];
    for (name, description, setting) in bools {
        GucRegistry::define_bool_guc(name, description, c"", setting, Superuser.context(), Superuser.flags());
    }
    GucRegistry::define_enum_guc(
        c"pageperfect.embedding_provider",
        c"Embedding provider: local (built in, no network) or openai (any OpenAI-compatible server).",
        c"",
        &EMBEDDING_PROVIDER,
        Superuser.context(),
        Superuser.flags(),
    );
    GucRegistry::define_enum_guc(
        c"pageperfect.llm_provider",
        c"Drafting provider: local (structured outline) or openai (any OpenAI-compatible server).",
        c"",
        &LLM_PROVIDER,
        Superuser.context(),
        Superuser.flags(),
    );
    GucRegistry::define_enum_guc(
        c"pageperfect.llm_token_limit",
        c"Field that limits a draft's length: max_tokens, or max_completion_tokens (reasoning models).",
        c"",
        &LLM_TOKEN_LIMIT,
        Superuser.context(),
        Superuser.flags(),
    );
    GucRegistry::define_enum_guc(
        c"pageperfect.run_log",
        c"Which finished cron runs keep their job_run_details row: all, failures, or off (none).",
        c"",
        &RUN_LOG,
        Superuser.context(),
        Superuser.flags(),
    );
    GucRegistry::define_enum_guc(
        c"pageperfect.crawl_provider",
        c"How pages are fetched: direct, or scraper_api for sites that need JavaScript rendering.",
        c"",
        &CRAWL_PROVIDER,
        Superuser.context(),
        Superuser.flags(),
    );
}

/// Whether a secret setting may come from `source`. `ALTER DATABASE/ROLE … SET` (validated
/// with `PGC_S_TEST`, applied at login as `PGC_S_DATABASE`/`USER`/`DATABASE_USER`) stores the
/// value in `pg_db_role_setting`, and `CREATE FUNCTION … SET` in `pg_proc`, both readable by
/// every role; the server's configuration, the command line, the environment and a
/// superuser's own session are not.
pub fn secret_source_allowed(source: pg_sys::GucSource::Type) -> bool {
    use pg_sys::GucSource::*;
    !matches!(source, PGC_S_TEST | PGC_S_DATABASE | PGC_S_USER | PGC_S_DATABASE_USER)
}

#[pg_guard]
unsafe extern "C-unwind" fn refuse_stored_secret(
    _newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    if secret_source_allowed(source) {
        return true;
    }
    unsafe {
        pg_sys::GUC_check_errmsg_string =
            pg_sys::pstrdup(c"pageperfect's secret settings cannot be set per database, per role or per function".as_ptr());
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(
            c"Such values are stored in catalogs that every role can read (pg_db_role_setting, pg_proc).".as_ptr(),
        );
        pg_sys::GUC_check_errhint_string =
            pg_sys::pstrdup(c"Set it in postgresql.conf or with ALTER SYSTEM, then SELECT pg_reload_conf().".as_ptr());
    }
    false
}

/// A numeric run-time parameter from `pageperfect.parameters`, or `default` when unset (SPI).
pub fn parameter(name: &str, default: f64) -> Result<f64, pgrx::spi::Error> {
    // A scalar subquery: always one row, NULL when the parameter is not set.
    Ok(pgrx::Spi::get_one_with_args::<f64>(
        "SELECT (SELECT (value #>> '{}')::float8 FROM pageperfect.parameters WHERE name = $1)",
        &[name.into()],
    )?
    .unwrap_or(default))
}
