//! Search Console owns the keyword data: service-account OAuth (`auth`, `session`) and Search
//! Analytics ingestion (`search_analytics`, the `ingest_gsc` stage) into `gsc_page_query_daily`
//! (`daily_rows`), CSV import, the 28-day `gsc_keywords` totals, and the CTR curve
//! fitted to them (`ctr_fits`, `expected_ctr`; `ctr` computes it, `ctr_fit` fits it).

pub mod api;
pub mod auth;
pub mod csv_import;
pub mod ctr;
pub mod ctr_fit;
pub mod daily_rows;
pub mod ingest;
pub mod search_analytics;
pub mod session;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

pgrx::extension_sql_file!("../../sql/gsc.sql", name = "gsc_schema");
pgrx::extension_sql_file!("../../sql/gsc_api.sql", name = "gsc_api", requires = ["gsc_schema", "engine"]);
