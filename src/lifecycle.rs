//! Versions: which SQL version this library serves, and what happens when a database has
//! another. Every release's install script stays installable (`sql/releases/`), each schema
//! change ships an upgrade script (`sql/pageperfect--<old>--<new>.sql`), and a library that
//! finds its database at another version does not touch it: the workers wait, and the log and
//! `get_scheduler_health()` say what to run (docs/operations.md, "Upgrading").

use pgrx::prelude::*;
use std::cmp::Ordering;

/// The SQL version this library was built for: the crate's version, after which pgrx names the
/// install script it generates.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a database has of pageperfect, as this library sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// No `CREATE EXTENSION pageperfect` (yet).
    Missing,
    /// The version this library serves.
    Current,
    /// An older version: `ALTER EXTENSION pageperfect UPDATE` brings it to this library's.
    Older(String),
    /// A newer version (or one this library cannot order): the library is the old part.
    Newer(String),
}

impl Installed {
    /// From `pg_extension.extversion` (`None`: not installed).
    pub fn from_extversion(extversion: Option<&str>) -> Installed {
        match extversion {
            None => Installed::Missing,
            Some(v) if v == LIBRARY_VERSION => Installed::Current,
            Some(v) => match compare_versions(v, LIBRARY_VERSION) {
                Some(Ordering::Less) => Installed::Older(v.to_string()),
                _ => Installed::Newer(v.to_string()),
            },
        }
    }

    /// Reads `pg_extension` of the current database (SPI).
    pub fn in_database() -> Result<Installed, pgrx::spi::Error> {
        // Read-only: `get_scheduler_health()` calls this on hot standbys too.
        let extversion = Spi::connect(|client| {
            client
                .select("SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pageperfect')", Some(1), &[])?
                .first()
                .get_one::<String>()
        })?;
        Ok(Installed::from_extversion(extversion.as_deref()))
    }

    /// What to do about a version this library does not serve, in a sentence for the server log
    /// and `get_scheduler_health()`; `None` when there is nothing to do.
    pub fn advice(&self, database: &str) -> Option<String> {
        match self {
            Installed::Missing | Installed::Current => None,
            Installed::Older(v) => Some(format!(
                "database \"{database}\" has pageperfect {v} and the server runs the library of {LIBRARY_VERSION}: \
                 run ALTER EXTENSION pageperfect UPDATE in it (the workers wait until then)"
            )),
            Installed::Newer(v) => Some(format!(
                "database \"{database}\" has pageperfect {v} and the server runs the library of {LIBRARY_VERSION}: \
                 install the library of {v} and restart the server (the workers wait until then)"
            )),
        }
    }
}

/// Orders dotted release numbers (`0.10.0` after `0.9.1`); `None` for anything else.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    fn parts(v: &str) -> Option<Vec<u64>> {
        v.split('.').map(|p| p.parse::<u64>().ok()).collect()
    }
    Some(parts(a)?.cmp(&parts(b)?))
}

#[pg_schema]
mod pageperfect {
    use super::Installed;
    use pgrx::prelude::*;

    /// `NULL` while this backend's library serves the database's SQL version; otherwise what to
    /// run, as the workers log it. `get_scheduler_health()` shows it as a row.
    #[pg_extern(stable)]
    fn extension_version_advice() -> Option<String> {
        let database = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
        Installed::in_database()
            .unwrap_or_else(|e| crate::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))
            .advice(&database.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically_part_by_part() {
        assert_eq!(compare_versions("0.1.0", "0.2.0"), Some(Ordering::Less));
        assert_eq!(compare_versions("0.10.0", "0.9.1"), Some(Ordering::Greater));
        assert_eq!(compare_versions("1.0", "1.0.0"), Some(Ordering::Less));
        assert_eq!(compare_versions("0.2.0", "0.2.0"), Some(Ordering::Equal));
        assert_eq!(compare_versions("0.2.0-beta", "0.2.0"), None);
    }

    #[test]
    fn the_library_serves_only_its_own_version() {
        assert_eq!(Installed::from_extversion(None), Installed::Missing);
        assert_eq!(Installed::from_extversion(Some(LIBRARY_VERSION)), Installed::Current);
        assert_eq!(Installed::from_extversion(Some("0.0.1")), Installed::Older("0.0.1".into()));
        assert_eq!(Installed::from_extversion(Some("99.0.0")), Installed::Newer("99.0.0".into()));
        assert_eq!(Installed::from_extversion(Some("custom")), Installed::Newer("custom".into()));
    }

    #[test]
    fn advice_names_the_command_that_fixes_it() {
        assert_eq!(Installed::Current.advice("postgres"), None);
        assert_eq!(Installed::Missing.advice("postgres"), None);
        let older = Installed::Older("0.0.1".into()).advice("shop").unwrap();
        assert!(older.contains("database \"shop\" has pageperfect 0.0.1"), "{older}");
        assert!(older.contains("run ALTER EXTENSION pageperfect UPDATE"), "{older}");
        let newer = Installed::Newer("99.0.0".into()).advice("shop").unwrap();
        assert!(newer.contains("install the library of 99.0.0 and restart the server"), "{newer}");
    }
}
