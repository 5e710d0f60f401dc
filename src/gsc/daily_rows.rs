//! Writing Search Console rows: the one upsert into `gsc_page_query_daily` (keyed by date, site,
//! page and query, so loading the same rows again changes nothing) that CSV import and API
//! ingestion share, followed by the refresh of the site's `gsc_keywords`.

use chrono::NaiveDate;
use pgrx::prelude::*;

/// Rows of one site, column by column, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
pub struct DailyRows {
    dates: Vec<String>,
    pages: Vec<String>,
    queries: Vec<String>,
    clicks: Vec<i64>,
    impressions: Vec<i64>,
    /// `None`: computed from clicks and impressions.
    ctrs: Vec<Option<f64>>,
    positions: Vec<Option<f64>>,
}

pub struct DailyRow {
    pub date: NaiveDate,
    pub page: String,
    pub query: String,
    pub clicks: i64,
    pub impressions: i64,
    pub ctr: Option<f64>,
    pub position: Option<f64>,
}

impl DailyRows {
    pub fn push(&mut self, row: DailyRow) {
        self.dates.push(row.date.to_string());
        self.pages.push(row.page);
        self.queries.push(row.query);
        self.clicks.push(row.clicks);
        self.impressions.push(row.impressions);
        self.ctrs.push(row.ctr);
        self.positions.push(row.position);
    }

    /// Inserts the rows for `site`, replacing those with the same key, and refreshes the site's
    /// `gsc_keywords`. Returns how many rows were written.
    pub fn upsert(self, site: &str) -> Result<i64, pgrx::spi::Error> {
        let written = Spi::get_one_with_args::<i64>(
            "WITH written AS (
                 INSERT INTO pageperfect.gsc_page_query_daily AS d (date, site, page, query, clicks, impressions, ctr, position)
                 SELECT r.date::date, $1, r.page, r.query, r.clicks, r.impressions,
                        coalesce(r.ctr, r.clicks::float8 / nullif(r.impressions, 0)), r.position
                   FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::float8[], $8::float8[])
                        AS r (date, page, query, clicks, impressions, ctr, position)
                 ON CONFLICT (date, site, page, query) DO UPDATE
                    SET clicks = excluded.clicks, impressions = excluded.impressions, ctr = excluded.ctr,
                        position = excluded.position, ingested_at = now()
                 RETURNING 1
             )
             SELECT count(*) FROM written",
            &[
                site.into(),
                self.dates.into(),
                self.pages.into(),
                self.queries.into(),
                self.clicks.into(),
                self.impressions.into(),
                self.ctrs.into(),
                self.positions.into(),
            ],
        )?
        .unwrap_or(0);
        Spi::run_with_args("SELECT pageperfect.refresh_gsc_keywords($1)", &[site.into()])?;
        Ok(written)
    }
}
