//! The gate of the durable requests: `queue_http_request`, behind `http_get`, `http_post` and
//! `http_delete`. It knows the caller, so it decides what the request may reach (the SSRF
//! guard for every role but superusers, unless `pageperfect.http_allow_private` is on) and how
//! long it may take, then stores it as the owner (roles cannot write `http_requests`).

use super::client::blocked_literal_host;
use crate::{as_owner, config, current_user, invalid_parameter};
use pgrx::prelude::*;
use pgrx::JsonB;

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Queues a request of the caller's; it is sent once the calling transaction commits.
    #[pg_extern(volatile)]
    fn queue_http_request(
        method: Option<&str>,
        url: Option<&str>,
        params: Option<JsonB>,
        headers: Option<JsonB>,
        body: Option<Vec<u8>>,
        timeout_milliseconds: Option<i32>,
    ) -> Option<i64> {
        crate::refuse_if_read_only("net.http_*()");
        // A delivery slot is held for as long as the request may take.
        let max_timeout = config::HTTP_MAX_TIMEOUT_MS.get();
        if let Some(asked) = timeout_milliseconds.filter(|ms| *ms > max_timeout) {
            invalid_parameter(format!(
                "timeout_milliseconds must be at most {max_timeout} (pageperfect.http_max_timeout_ms; got {asked})"
            ));
        }
        let guarded = !unsafe { pg_sys::superuser() } && !config::HTTP_ALLOW_PRIVATE.get();
        if let Some(blocked) = url.filter(|_| guarded).and_then(blocked_literal_host) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("URL \"{}\" is refused: {blocked}", url.unwrap_or_default()),
                "A superuser can allow such addresses for every role with pageperfect.http_allow_private = on."
            );
        }
        let owner = current_user();
        as_owner(|| {
            Spi::get_one_with_args::<i64>(
                "SELECT pageperfect.store_http_request($1, $2, $3, $4, $5, $6, $7, $8)",
                &[owner.into(), guarded.into(), method.into(), url.into(), params.into(), headers.into(), body.into(), timeout_milliseconds.into()],
            )
        })
        .unwrap_or_else(|e| error!("{e}"))
    }
}
