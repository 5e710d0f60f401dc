//! Search Console owns the keyword data: service-account OAuth and Search Analytics ingestion
//! into `gsc_page_query_daily`, CSV import, the 28-day `gsc_keywords` totals, and the CTR curve
//! fitted to them (`ctr_fits`, `expected_ctr`; `ctr` computes it, `ctr_fit` fits it).

pub mod api;
pub mod csv_import;
pub mod ctr;
pub mod ctr_fit;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

pgrx::extension_sql_file!("../../sql/gsc.sql", name = "gsc_schema");
