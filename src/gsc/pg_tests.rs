//! `#[pg_test]`s of the Search Console SQL functions: CSV import, the CTR fit against an
//! independent check of its optimality, and `expected_ctr`.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    /// Shaped as an export: a BOM, CRLF line ends, the export's column names, a query with a
    /// comma, quotes and a line break, thousands separators, a percent CTR.
    const EXPORT: &str = "\u{feff}Date,Page,Query,Clicks,Impressions,CTR,Position\r\n\
        2026-11-01,https://example.com/a,\"shoes, \"\"red\"\"\nfor kids\",12,\"1,200\",1.00%,3.4\r\n\
        2026-11-01,https://example.com/a,plain,0,15,0%,22\r\n\
        2026-11-02,https://example.com/b,plain,3,30,10.00%,7.5\r\n";

    #[pg_test]
    fn an_export_is_imported_once_however_often_it_is_loaded() {
        assert_eq!(Spi::get_one_with_args::<i64>("SELECT pageperfect.import_gsc_csv('sc-domain:example.com', $1)", &[EXPORT.into()]).unwrap(), Some(3));
        let tricky = Spi::get_two::<i32, f64>(
            "SELECT impressions, ctr FROM pageperfect.gsc_page_query_daily WHERE query = E'shoes, \"red\"\\nfor kids'",
        )
        .unwrap();
        assert_eq!(tricky, (Some(1200), Some(0.01)));
        let before = Spi::get_one::<String>("SELECT string_agg(format('%s %s %s %s %s', date, page, query, clicks, impressions), ';' ORDER BY date, page, query) FROM pageperfect.gsc_page_query_daily").unwrap();
        Spi::run_with_args("SELECT pageperfect.import_gsc_csv('sc-domain:example.com', $1)", &[EXPORT.into()]).unwrap();
        let after = Spi::get_one::<String>("SELECT string_agg(format('%s %s %s %s %s', date, page, query, clicks, impressions), ';' ORDER BY date, page, query) FROM pageperfect.gsc_page_query_daily").unwrap();
        assert_eq!(before, after);
        assert_eq!(count("SELECT count(*) FROM pageperfect.gsc_page_query_daily"), 3);
        // The 28-day totals: "plain" on two pages, each its own row.
        assert_eq!(count("SELECT count(*) FROM pageperfect.gsc_keywords WHERE site = 'sc-domain:example.com'"), 3);
        assert_eq!(count("SELECT impressions FROM pageperfect.gsc_keywords WHERE page = 'https://example.com/b'"), 30);
    }

    #[pg_test(error = "cannot import the CSV: data row 1 has no date or no page; import_gsc_csv needs the Date, Page and Query of every row")]
    fn an_export_without_pages_is_refused() {
        Spi::run("SELECT pageperfect.import_gsc_csv('s', E'Top queries,Clicks,Impressions,CTR,Position\\nshoes,1,10,10%,2\\n')").unwrap();
    }

    #[pg_test(error = "cannot import the CSV: line 3, column Clicks: cannot read \"many\" as a whole number of clicks")]
    fn a_bad_number_names_its_line_and_column() {
        Spi::run("SELECT pageperfect.import_gsc_csv('s', E'Date,Page,Query,Clicks,Impressions\\n2026-11-01,/a,q,1,10\\n2026-11-01,/a,r,many,10\\n')").unwrap();
    }

    /// Rows on positions 1 to 30 in steps of 0.5 on each of two days, 10,000 impressions each,
    /// clicks as the curve alpha = -0.5, beta = -0.3 gives them, rounded: 118 rows.
    fn generate_rows() {
        Spi::run(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - day, 's', 'https://example.com/a', 'q' || p, round(10000 / (1 + exp(-(-0.5 - 0.3 * p)))), 10000, p
               FROM generate_series(2, 60) i, LATERAL (SELECT i / 2.0 AS p) pos, generate_series(1, 2) day",
        )
        .unwrap();
    }

    #[pg_test]
    fn the_ctr_fit_solves_the_likelihood_equations_and_is_kept() {
        generate_rows();
        let (alpha, beta, rows) = Spi::get_three::<f64, f64, i64>("SELECT * FROM pageperfect.recalibrate_ctr(30)").unwrap();
        let (alpha, beta) = (alpha.unwrap(), beta.unwrap());
        assert_eq!(rows, Some(118));
        assert!((alpha + 0.5).abs() < 1e-3 && (beta + 0.3).abs() < 1e-3, "{alpha} {beta}");
        // An independent check of the maximum: both score equations of the binomial likelihood,
        // Σ (c − n·σ) = 0 and Σ (c − n·σ)·p = 0, computed in SQL over the raw rows.
        let (score_alpha, score_beta) = Spi::get_two_with_args::<f64, f64>(
            "SELECT sum(clicks - impressions / (1 + exp(-($1 + $2 * position)))) / sum(impressions),
                    sum((clicks - impressions / (1 + exp(-($1 + $2 * position)))) * position) / sum(impressions * position)
               FROM pageperfect.gsc_page_query_daily",
            &[alpha.into(), beta.into()],
        )
        .unwrap();
        assert!(score_alpha.unwrap().abs() < 1e-9 && score_beta.unwrap().abs() < 1e-9, "{score_alpha:?} {score_beta:?}");

        // Kept: the parameters, the history, and expected_ctr follows them.
        assert_eq!(Spi::get_one::<f64>("SELECT (value #>> '{}')::float8 FROM pageperfect.parameters WHERE name = 'ctr_alpha'").unwrap(), Some(alpha));
        assert_eq!(count("SELECT count(*) FROM pageperfect.ctr_fits WHERE rows_used = 118 AND lookback_days = 30"), 1);
        assert!(Spi::get_one::<bool>("SELECT (value #>> '{}')::timestamptz > now() - interval '1 minute' FROM pageperfect.parameters WHERE name = 'ctr_fitted_at'").unwrap().unwrap());
        let at_3 = Spi::get_one::<f64>("SELECT pageperfect.expected_ctr(3)").unwrap().unwrap();
        assert!((at_3 - 1.0 / (1.0 + (-(alpha + beta * 3.0)).exp())).abs() < 1e-15);

        // Rows without impressions carry no evidence: the same fit with them.
        Spi::run("INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
                  SELECT current_date - 1, 's', 'https://example.com/z', 'zero ' || i, 0, 0, 1 + i FROM generate_series(1, 50) i").unwrap();
        let (again_alpha, again_beta, again_rows) = Spi::get_three::<f64, f64, i64>("SELECT * FROM pageperfect.recalibrate_ctr(30)").unwrap();
        assert_eq!((again_alpha, again_beta, again_rows), (Some(alpha), Some(beta), Some(118)));
    }

    #[pg_test(error = "cannot fit the CTR curve to the last 90 days of Search Console data: too little data: 0 row(s) with impressions, at 0 distinct position(s); at least 2 positions are needed")]
    fn no_data_is_too_little_data() {
        Spi::run("SELECT * FROM pageperfect.recalibrate_ctr()").unwrap();
    }

    #[pg_test(error = "cannot fit the CTR curve to the last 90 days of Search Console data: too little data: 5 row(s) with impressions, at 1 distinct position(s); at least 2 positions are needed")]
    fn one_position_is_too_little_data() {
        Spi::run("INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
                  SELECT current_date - 1, 's', '/p', 'q' || i, 1, 10, 4 FROM generate_series(1, 5) i").unwrap();
        Spi::run("SELECT * FROM pageperfect.recalibrate_ctr()").unwrap();
    }

    #[pg_test]
    fn the_default_curve_falls_with_position() {
        let (top, tenth) = Spi::get_two::<f64, f64>("SELECT pageperfect.expected_ctr(1), pageperfect.expected_ctr(10)").unwrap();
        assert!((top.unwrap() - 0.2994).abs() < 1e-3 && tenth.unwrap() < top.unwrap());
    }
}
