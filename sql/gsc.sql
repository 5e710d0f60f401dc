-- gsc: Search Console rows, 28-day keyword totals, ingestion runs and the CTR-curve fits.

CREATE TABLE pageperfect.gsc_page_query_daily (
    date        date NOT NULL,
    site        text NOT NULL,
    page        text NOT NULL,
    query       text NOT NULL,
    clicks      int NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    impressions int NOT NULL DEFAULT 0 CHECK (impressions >= 0),
    ctr         float8,
    position    float8 CHECK (position IS NULL OR position >= 1),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, site, page, query)
);
CREATE INDEX gsc_page_query_daily_page_idx ON pageperfect.gsc_page_query_daily (page, date);

CREATE TABLE pageperfect.gsc_keywords (
    site         text NOT NULL,
    page         text NOT NULL,
    query        text NOT NULL,
    clicks       bigint NOT NULL DEFAULT 0,
    impressions  bigint NOT NULL DEFAULT 0,
    ctr          float8,
    position     float8,
    window_start date NOT NULL,
    window_end   date NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, page, query)
);
CREATE INDEX gsc_keywords_page_idx ON pageperfect.gsc_keywords (page);

-- One row per site and day that ingest_gsc fetched: how many rows it wrote, or why it failed.
-- Which roles may use a Search Console property's data (a superuser fills it: the data of a
-- property is its owner's business). A role sees the rows of its sites (and of its groups'),
-- and its workflows cluster only those sites' queries; superusers see every site.
CREATE TABLE pageperfect.gsc_site_owners (
    site       text NOT NULL,
    owner      name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, owner)
);
ALTER TABLE pageperfect.gsc_site_owners ENABLE ROW LEVEL SECURITY;
CREATE POLICY gsc_site_owners_own ON pageperfect.gsc_site_owners
    USING (pg_catalog.pg_has_role(CURRENT_USER, owner, 'USAGE'));
GRANT SELECT ON pageperfect.gsc_site_owners TO pageperfect_user;
SELECT pageperfect.scope_rows_to_parent(ARRAY['gsc_page_query_daily', 'gsc_keywords'], 'gsc_site_owners', 'site', 'site');

CREATE TABLE pageperfect.gsc_ingestions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        uuid,
    -- The days fetched: from_date to for_date.
    for_date      date NOT NULL,
    from_date     date,
    site          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    rows_upserted bigint NOT NULL DEFAULT 0,
    requests      int NOT NULL DEFAULT 0,
    error         text,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gsc_ingestions_date_idx ON pageperfect.gsc_ingestions (for_date, site);

-- Per site and day: whether the stored rows are final (Google changes a day's data for two or
-- three days after it ends), how many came, and when. A day not final is fetched again.
CREATE TABLE pageperfect.gsc_days (
    site       text NOT NULL,
    date       date NOT NULL,
    final      boolean NOT NULL,
    rows       bigint NOT NULL DEFAULT 0,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, date)
);
CREATE INDEX gsc_days_not_final_idx ON pageperfect.gsc_days (site, date) WHERE NOT final;

-- Every recalibrate_ctr() fit, so the history of the curve can be seen.
CREATE TABLE pageperfect.ctr_fits (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fitted_at      timestamptz NOT NULL DEFAULT now(),
    lookback_days  int NOT NULL,
    alpha          float8 NOT NULL,
    beta           float8 NOT NULL,
    rows_used      bigint NOT NULL,
    impressions    bigint NOT NULL,
    clicks         bigint NOT NULL,
    iterations     int NOT NULL,
    log_likelihood float8 NOT NULL
);

-- The 28-day totals per (page, query) of `site`, ending at its latest day of data.
CREATE FUNCTION pageperfect.refresh_gsc_keywords(p_site text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_day date := (SELECT max(date) FROM pageperfect.gsc_page_query_daily WHERE site = p_site);
    refreshed bigint;
BEGIN
    DELETE FROM pageperfect.gsc_keywords WHERE site = p_site;
    INSERT INTO pageperfect.gsc_keywords (site, page, query, clicks, impressions, ctr, position, window_start, window_end)
    SELECT p_site, d.page, d.query, sum(d.clicks), sum(d.impressions),
           sum(d.clicks)::float8 / nullif(sum(d.impressions), 0),
           sum(d.position * d.impressions) FILTER (WHERE d.position IS NOT NULL)
               / nullif(sum(d.impressions) FILTER (WHERE d.position IS NOT NULL), 0),
           last_day - 27, last_day
      FROM pageperfect.gsc_page_query_daily d
     WHERE d.site = p_site AND d.date > last_day - 28
     GROUP BY d.page, d.query;
    GET DIAGNOSTICS refreshed = ROW_COUNT;
    RETURN refreshed;
END
$$;
