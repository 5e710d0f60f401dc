-- The baseline CTR fit a user would write in plain SQL: least squares on the empirical logit of
-- each row (with the usual +0.5 correction) against its position, over the same 90 days of rows
-- recalibrate_ctr(90) reads. Not maximum likelihood, but what a SQL one-liner gets.
SELECT regr_intercept(ln((clicks + 0.5) / (impressions - clicks + 0.5)), position) AS alpha,
       regr_slope(ln((clicks + 0.5) / (impressions - clicks + 0.5)), position) AS beta
  FROM pageperfect.gsc_page_query_daily
 WHERE date >= current_date - 90 AND impressions > 0;
