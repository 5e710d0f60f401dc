//! Runner pools: the database and role a run's runner connects as, by OID. Runners of one pool
//! are reused for its runs; a run whose role may not log in or connect fails with pg_cron's
//! message instead of waiting for a runner that could never start.

use super::slots::Slot;
use crate::worker::query_json;
use pgrx::pg_sys;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

/// A database and role, by OID, as runners connect.
pub type Pool = (pg_sys::Oid, pg_sys::Oid);

/// The OIDs a runner for `database` and `username` connects with, or the error to record when
/// the role could not do that by logging in.
pub fn resolve(database: &str, username: &str) -> Result<Result<Pool, String>, String> {
    #[derive(Deserialize)]
    struct Check {
        database_oid: Option<u32>,
        allows_connections: Option<bool>,
        role_oid: Option<u32>,
        can_login: Option<bool>,
        can_connect: Option<bool>,
    }
    let check: Check = query_json(
        "SELECT jsonb_build_object(
                'database_oid', d.oid::bigint, 'allows_connections', d.datallowconn,
                'role_oid', r.oid::bigint, 'can_login', r.rolcanlogin,
                'can_connect', CASE WHEN d.oid IS NOT NULL AND r.oid IS NOT NULL
                                    THEN r.rolsuper OR pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT') END)
           FROM (SELECT $1 ->> 'database' AS datname, $1 ->> 'username' AS rolname) k
           LEFT JOIN pg_catalog.pg_database d ON d.datname = k.datname
           LEFT JOIN pg_catalog.pg_roles r ON r.rolname = k.rolname",
        Some(json!({"database": database, "username": username})),
    )?;
    Ok(match check {
        Check { database_oid: None, .. } => Err(format!("ERROR: database \"{database}\" does not exist")),
        Check { role_oid: None, .. } => Err(format!("ERROR: role \"{username}\" does not exist")),
        Check { can_login: Some(false), .. } => Err(format!(
            "ERROR: role \"{username}\" can not log in\nDETAIL: Jobs may only be run by roles that have the LOGIN attribute."
        )),
        Check { allows_connections: Some(false), .. } => {
            Err(format!("ERROR: database \"{database}\" is not currently accepting connections"))
        }
        Check { can_connect: Some(false), .. } => Err(format!("ERROR: User {username} does not have CONNECT privilege on {database}")),
        Check { database_oid: Some(d), role_oid: Some(r), .. } => Ok((pg_sys::Oid::from(d), pg_sys::Oid::from(r))),
    })
}

pub fn pool_of(slot: &Slot) -> Pool {
    (
        pg_sys::Oid::from(slot.database.load(Ordering::Acquire)),
        pg_sys::Oid::from(slot.role.load(Ordering::Acquire)),
    )
}
