//! The pipeline owns the PagePerfect stages (crawl, segment and embed, keyword clustering, gap
//! analysis, rewrite draft), one file per stage, and the tables they fill: `pages`,
//! `page_embeddings`, `embedding_cache`, `keyword_clusters`, `rewrite_recommendations`,
//! `rewrite_drafts`. The pipeline workers run these stages for the queue's job engine.

pgrx::extension_sql_file!("../../sql/pipeline.sql", name = "pipeline_schema");
