//! The SQL functions of Search Console data: `import_gsc_csv` (the files users export),
//! `recalibrate_ctr` (the curve fitted to the site's own clicks) and `expected_ctr`. Parsing and
//! fitting are the pure `csv_import` and `ctr_fit`; this file is the SPI around them.

use super::csv_import::parse_gsc_csv_interruptible;
use super::ctr::CtrCurve;
use super::ctr_fit::fit_ctr_curve_interruptible;
use super::daily_rows::{DailyRow, DailyRows};
use crate::{invalid_parameter, raise};
use pgrx::prelude::*;

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Loads a Search Console export (Date, Page, Query, Clicks, Impressions, and optionally
    /// CTR and Position; the export's own column names and their usual aliases) into
    /// `gsc_page_query_daily` for `site`, replacing the rows it repeats, and refreshes the site's
    /// `gsc_keywords`. Returns how many rows it loaded.
    #[pg_extern(volatile)]
    fn import_gsc_csv(site: &str, csv: &str) -> i64 {
        if site.trim().is_empty() {
            invalid_parameter("site must not be empty (e.g. 'sc-domain:example.com' or 'https://example.com/')");
        }
        let rows = parse_gsc_csv_interruptible(csv, &mut || { pgrx::check_for_interrupts!() }).unwrap_or_else(|e| invalid_parameter(format!("cannot import the CSV: {e}")));
        let mut daily = DailyRows::default();
        for (i, row) in rows.into_iter().enumerate() {
            let (Some(date), Some(page)) = (row.date, row.page) else {
                invalid_parameter(format!(
                    "cannot import the CSV: data row {} has no date or no page; import_gsc_csv needs the Date, Page and Query of every row",
                    i + 1
                ));
            };
            if row.clicks > row.impressions {
                invalid_parameter(format!("cannot import the CSV: data row {} has more clicks than impressions", i + 1));
            }
            daily.push(DailyRow {
                date,
                page,
                query: row.query,
                clicks: row.clicks,
                impressions: row.impressions,
                ctr: row.ctr,
                position: row.position,
            });
        }
        daily.upsert(site).unwrap_or_else(|e| error!("{e}"))
    }

    /// Fits `ctr(p) = 1 / (1 + exp(-(alpha + beta · p)))` by maximum likelihood to the clicks
    /// and impressions of the last `lookback_days` days, keeps it in `parameters` (used by
    /// `expected_ctr` and gap analysis) and in the `ctr_fits` history.
    #[pg_extern(volatile)]
    fn recalibrate_ctr(
        lookback_days: default!(i32, 90),
    ) -> TableIterator<'static, (name!(alpha, f64), name!(beta, f64), name!(rows_used, i64))> {
        if lookback_days < 1 {
            invalid_parameter("lookback_days must be at least 1");
        }
        // Rows at one position are exchangeable in the likelihood: summing their clicks and
        // impressions per position gives the same fit from a few hundred rows instead of millions.
        let (groups, rows_used) = Spi::connect(|client| {
            let mut groups = Vec::new();
            let mut rows_used = 0_i64;
            for row in client.select(
                "SELECT sum(clicks)::float8, sum(impressions)::float8, position, count(*)
                   FROM pageperfect.gsc_page_query_daily
                  WHERE date > current_date - $1 AND impressions > 0 AND position IS NOT NULL
                  GROUP BY position",
                None,
                &[lookback_days.into()],
            )? {
                groups.push((
                    row.get::<f64>(1)?.unwrap_or_default(),
                    row.get::<f64>(2)?.unwrap_or_default(),
                    row.get::<f64>(3)?.unwrap_or_default(),
                ));
                rows_used += row.get::<i64>(4)?.unwrap_or_default();
            }
            Ok::<_, pgrx::spi::Error>((groups, rows_used))
        })
        .unwrap_or_else(|e| error!("{e}"));
        let cannot_fit = |reason: String| -> ! {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("cannot fit the CTR curve to the last {lookback_days} days of Search Console data: {reason}"),
            )
        };
        if groups.len() < 2 {
            cannot_fit(format!(
                "too little data: {rows_used} row(s) with impressions, at {} distinct position(s); at least 2 positions are needed",
                groups.len()
            ));
        }
        let fit = fit_ctr_curve_interruptible(groups, &mut || { pgrx::check_for_interrupts!() }).unwrap_or_else(|e| cannot_fit(e.to_string()));
        Spi::run_with_args(
            "INSERT INTO pageperfect.ctr_fits (lookback_days, alpha, beta, rows_used, impressions, clicks, iterations, log_likelihood)
             VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint, $7, $8);
             UPDATE pageperfect.parameters SET value = to_jsonb($2), updated_at = now() WHERE name = 'ctr_alpha';
             UPDATE pageperfect.parameters SET value = to_jsonb($3), updated_at = now() WHERE name = 'ctr_beta';
             UPDATE pageperfect.parameters SET value = to_jsonb(now()), updated_at = now() WHERE name = 'ctr_fitted_at'",
            &[
                lookback_days.into(),
                fit.alpha.into(),
                fit.beta.into(),
                rows_used.into(),
                fit.impressions.into(),
                fit.clicks.into(),
                (fit.iterations as i32).into(),
                fit.log_likelihood.into(),
            ],
        )
        .unwrap_or_else(|e| error!("{e}"));
        TableIterator::once((fit.alpha, fit.beta, rows_used))
    }

    /// The click-through rate the current CTR curve expects at `position` (1 = the top result).
    #[pg_extern(stable, parallel_safe)]
    fn expected_ctr(position: f64) -> f64 {
        if !(position.is_finite() && position >= 1.0) {
            invalid_parameter(format!("position must be at least 1 (got {position})"));
        }
        CtrCurve::from_parameters().unwrap_or_else(|e| error!("{e}")).expected_ctr(position)
    }
}
