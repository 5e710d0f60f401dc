//! `bench-pgmq-install URL`: installs pgmq's own SQL (the release the `pgmq` crate embeds) into the
//! database at URL, without pgmq's C extension, for the queue benchmark's pgmq baseline; prints
//! the version installed.

use pgmq::PGMQueueExt;

fn main() {
    let url = std::env::args().nth(1).expect("usage: bench-pgmq-install postgres://user:password@host:port/database");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let queue = PGMQueueExt::new(url, 1).await.expect("connect");
        queue.install_sql_from_embedded().await.expect("install pgmq's SQL");
        let version = queue.installed_version().await.expect("read the installed version");
        println!("{}", version.map_or_else(|| "unknown".to_string(), |v| v.to_string()));
    });
}
