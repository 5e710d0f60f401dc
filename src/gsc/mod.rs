//! Search Console owns the keyword data: service-account OAuth and Search Analytics ingestion
//! into `gsc_page_query_daily`, CSV import, the 28-day `gsc_keywords` totals, and the CTR curve
//! fitted to them (`ctr_fits`, `expected_ctr`; `ctr` computes it).

pub mod ctr;

pgrx::extension_sql_file!("../../sql/gsc.sql", name = "gsc_schema");
