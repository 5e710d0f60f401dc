-- pageperfect's CTR fit over the same rows: maximum likelihood (Newton) on every row's clicks out of its impressions.
SELECT alpha, beta, rows_used FROM pageperfect.recalibrate_ctr(90);
