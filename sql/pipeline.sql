-- pipeline: what the PagePerfect stages read and write: pages, paragraph embeddings, keyword
-- clusters, gap recommendations and drafts. Rows are owned through their page; job_id columns
-- record which job produced a row and deliberately have no foreign key, so results outlive the
-- cleanup of old jobs.

CREATE TABLE pageperfect.pages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url            text NOT NULL CHECK (url ~* '^https?://'),
    owner          name NOT NULL DEFAULT CURRENT_USER,
    final_url      text,
    status_code    int,
    content_type   text,
    html           text,
    title          text,
    content_hash   text,
    fetched_at     timestamptz,
    -- When the crawler first saw the current content (the content score's freshness falls back
    -- on it), and the modification time the page states itself (article:modified_time and the
    -- like), when it states one.
    content_changed_at timestamptz,
    stated_modified_at timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pages_owner_url_uniq UNIQUE (owner, url)
);
CREATE INDEX pages_fetched_at_idx ON pageperfect.pages (fetched_at NULLS FIRST);

-- The links each crawled page holds, recorded by wait_crawl: the target resolved against the
-- page's final URL, without its #fragment, and the text of its first anchor. Link suggestions
-- leave out pages that already link to the target.
CREATE TABLE pageperfect.page_links (
    page_id     bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    target_url  text NOT NULL,
    anchor_text text NOT NULL DEFAULT '',
    PRIMARY KEY (page_id, target_url)
);
CREATE INDEX page_links_target_idx ON pageperfect.page_links (target_url);

-- robots.txt per origin, cached by the crawler.
CREATE TABLE pageperfect.robots_cache (
    origin      text PRIMARY KEY,
    status_code int,
    body        text,
    fetched_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pageperfect.page_embeddings (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id    bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    job_id     uuid,
    position   int NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('heading', 'paragraph', 'list_item')),
    tag        text NOT NULL,
    content    text NOT NULL,
    text_hash  text NOT NULL,
    embedding  real[] NOT NULL,
    provider   text NOT NULL,
    model      text NOT NULL,
    -- The embedding_dimensions setting it was made with (0: the model's own): vectors are only
    -- reused under the same provider, model and dimensions.
    dimensions int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT page_embeddings_page_position_uniq UNIQUE (page_id, position)
);

-- Embeddings by text hash, so unchanged text is never sent to a provider twice.
CREATE TABLE pageperfect.embedding_cache (
    provider   text NOT NULL,
    model      text NOT NULL,
    dimensions int  NOT NULL,
    text_hash  text NOT NULL,
    embedding  real[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model, dimensions, text_hash)
);

CREATE TABLE pageperfect.keyword_clusters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id     bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    job_id      uuid,
    label       int NOT NULL CHECK (label >= 0),
    -- Most impressions first, with each query's impressions alongside.
    queries     text[] NOT NULL,
    query_impressions bigint[] NOT NULL,
    impressions bigint NOT NULL DEFAULT 0,
    clicks      bigint NOT NULL DEFAULT 0,
    -- Impression-weighted average search position of its queries.
    position    float8,
    centroid    real[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keyword_clusters_page_idx ON pageperfect.keyword_clusters (page_id);

CREATE TABLE pageperfect.rewrite_recommendations (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id               bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    job_id                uuid,
    cluster_id            bigint NOT NULL REFERENCES pageperfect.keyword_clusters (id) ON DELETE CASCADE,
    rank                  int NOT NULL CHECK (rank BETWEEN 1 AND 10),
    queries               text[] NOT NULL,
    impressions           bigint NOT NULL,
    similarity            float8 NOT NULL,
    opportunity_score     float8 NOT NULL,
    estimated_clicks_gain float8,
    -- The page's paragraphs closest to the cluster, closest first (ids into page_embeddings).
    closest_embedding_ids bigint[] NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rewrite_recommendations_page_idx ON pageperfect.rewrite_recommendations (page_id, rank);

CREATE TABLE pageperfect.rewrite_drafts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id           bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    job_id            uuid,
    recommendation_id bigint REFERENCES pageperfect.rewrite_recommendations (id) ON DELETE SET NULL,
    provider          text NOT NULL,
    model             text NOT NULL,
    draft             text NOT NULL,
    prompt_tokens     int,
    completion_tokens int,
    latency_ms        int,
    -- The page's content score when the draft was written, and the score the page would reach
    -- with the draft's paragraphs added (NULL when they could not be embedded).
    score_before      int,
    score_after       int,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rewrite_drafts_page_idx ON pageperfect.rewrite_drafts (page_id, created_at DESC);

-- The content score (0-100) of a page per workflow run (gap_analysis), with its parts (each 0-1,
-- NULL when the data to judge it is missing) and the figures behind them in `details`.
CREATE TABLE pageperfect.content_scores (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id     bigint NOT NULL REFERENCES pageperfect.pages (id) ON DELETE CASCADE,
    job_id      uuid,
    score       int NOT NULL CHECK (score BETWEEN 0 AND 100),
    coverage    float8,
    opportunity float8,
    freshness   float8,
    ctr         float8,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX content_scores_page_idx ON pageperfect.content_scores (page_id, created_at DESC);

-- A role sees only its own pages and what was derived from them.
ALTER TABLE pageperfect.pages ENABLE ROW LEVEL SECURITY;
CREATE POLICY pages_owner ON pageperfect.pages USING (owner = CURRENT_USER);
SELECT pageperfect.scope_rows_to_parent(ARRAY['page_embeddings', 'page_links', 'keyword_clusters', 'rewrite_recommendations', 'rewrite_drafts', 'content_scores'], 'pages', 'page_id');
GRANT SELECT ON pageperfect.pages TO pageperfect_user;
