//! The connection pool and the one way the server reads the database: a query's rows as JSON
//! (`to_jsonb` of each row, in Postgres), so that every answer has the SQL functions' own column
//! names and types. Parameters are passed as text and cast in the SQL (`$1::text::uuid`): a bad
//! value is then refused by Postgres with its own message, which `Failure` carries to the client.

use axum::http::StatusCode;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// A pool of connections as the configured role. Each connection names itself
/// `pageperfect-web` in `pg_stat_activity`.
pub fn pool(database_url: &str, size: usize) -> Result<Pool, String> {
    let mut config: tokio_postgres::Config = database_url.parse().map_err(|e| format!("--database-url: {e}"))?;
    if config.get_application_name().is_none() {
        config.application_name("pageperfect-web");
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| e.to_string())
}

/// Why a request failed: the HTTP status and what to tell the client.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into(), hint: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("the database is not reachable: {e}"))
    }
}

impl From<tokio_postgres::Error> for Failure {
    /// The server's message and hint, with a status that says whose fault it was.
    fn from(e: tokio_postgres::Error) -> Failure {
        let Some(db) = e.as_db_error() else {
            return Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("the database connection failed: {e}"));
        };
        let code = db.code();
        let status = if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            StatusCode::FORBIDDEN
        } else if *code == SqlState::NO_DATA_FOUND
            || *code == SqlState::UNDEFINED_TABLE
            // pg_cron's message for a job the caller cannot see (raised without a code of its own).
            || db.message().starts_with("could not find valid entry for job")
        {
            StatusCode::NOT_FOUND
        } else if code.code().starts_with("22") || code.code().starts_with("42") || *code == SqlState::PROGRAM_LIMIT_EXCEEDED {
            // Data exceptions (bad values) and syntax or access rules.
            StatusCode::BAD_REQUEST
        } else if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE || *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StatusCode::CONFLICT
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Failure { status, message: db.message().to_string(), hint: db.hint().map(str::to_string) }
    }
}

/// Every row of `sql` as a JSON array of objects.
pub async fn rows(pool: &Pool, sql: &str, params: &[&str]) -> Result<Value, Failure> {
    let wrapped = format!("SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]'::jsonb) FROM ({sql}) r");
    one_value(pool, &wrapped, params).await
}

/// The first row of `sql` as a JSON object (null when there is none).
pub async fn row(pool: &Pool, sql: &str, params: &[&str]) -> Result<Value, Failure> {
    let wrapped = format!("SELECT (SELECT to_jsonb(r) FROM ({sql}) r LIMIT 1)");
    one_value(pool, &wrapped, params).await
}

/// The single jsonb value that `sql` returns.
pub async fn one_value(pool: &Pool, sql: &str, params: &[&str]) -> Result<Value, Failure> {
    let client = pool.get().await?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let row = client.query_one(sql, &params).await?;
    Ok(row.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}
