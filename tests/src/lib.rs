//! Harness for the integration tests: real PostgreSQL clusters with the installed pageperfect
//! extension, started in a scratch directory on a free loopback port. Postgres refuses to run as
//! root, so under root the clusters run as `$PG_USER` (default `postgres`). A cluster is stopped
//! and removed when dropped; when the test failed its directory is kept and its path printed.

use postgres::{Client, NoTls};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use postgres;

pub mod bench_csv;
pub mod google;
pub mod model_server;
pub mod site;

pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    bindir: PathBuf,
}

fn pg_config(arg: &str) -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".to_string());
    let out = Command::new(&pg_config).arg(arg).output().unwrap_or_else(|e| panic!("{pg_config}: {e}"));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn cluster_user() -> String {
    std::env::var("PG_USER").unwrap_or_else(|_| "postgres".to_string())
}

/// A command that runs as the cluster's OS user.
fn as_cluster_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &cluster_user(), "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory for a cluster called `name` (owned by the cluster user) and Postgres's bindir.
fn scratch_dir(name: &str) -> (PathBuf, PathBuf) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let work = std::env::var("PAGEPERFECT_WORK").unwrap_or_else(|_| "/tmp/pageperfect-it".to_string());
    let dir = PathBuf::from(work).join(format!("it-{name}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if running_as_root() {
        let mut chown = Command::new("chown");
        chown.arg(cluster_user()).arg(&dir).arg(dir.parent().unwrap());
        run(chown, "chown");
    }
    (dir, pg_config("--bindir"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Starts a fresh cluster. `preload` puts pageperfect in `shared_preload_libraries` (its
    /// workers attach to database `postgres`); `settings` are extra `postgresql.conf` lines.
    pub fn start(name: &str, preload: bool, settings: &[&str]) -> Cluster {
        let (dir, bindir) = scratch_dir(name);
        let mut initdb = as_cluster_user(&bindir.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]);
        run(initdb, "initdb");
        let mut lines: Vec<&str> = vec!["fsync = off", "log_min_messages = log", "max_worker_processes = 64"];
        if preload {
            lines.push("shared_preload_libraries = 'pageperfect'");
        }
        lines.extend(settings);
        Cluster::configure_and_start(dir, bindir, &lines)
    }

    /// A hot standby of `primary` (`pg_basebackup -R`: it streams from the primary and is
    /// promoted with `promote`), with the primary's settings and its own port.
    pub fn standby_of(primary: &Cluster, name: &str) -> Cluster {
        let (dir, bindir) = scratch_dir(name);
        let mut backup = as_cluster_user(&bindir.join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-R", "-X", "stream"]);
        run(backup, "pg_basebackup");
        Cluster::configure_and_start(dir, bindir, &["hot_standby = on"])
    }

    /// Appends the cluster's port and socket directory and `lines` to its configuration (later
    /// lines win over a copied primary's), and starts it.
    fn configure_and_start(dir: PathBuf, bindir: PathBuf, lines: &[&str]) -> Cluster {
        let port = free_port();
        let mut conf = format!("port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n", dir.display());
        for line in lines {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.join("data/postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).unwrap();

        let cluster = Cluster { dir, port, bindir };
        cluster.pg_ctl(&["-w", "start"]);
        cluster
    }

    /// `pg_ctl promote`: a standby becomes a primary.
    pub fn promote(&self) {
        self.pg_ctl(&["-w", "promote"]);
    }

    /// `pg_ctl stop -m immediate`: the server goes away as in a crash or a lost machine.
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = as_cluster_user(&self.bindir.join("pg_ctl"));
        cmd.arg("-D").arg(self.dir.join("data")).arg("-l").arg(self.dir.join("server.log")).args(args);
        // Without it: pgrx would append a backtrace to every error's DETAIL.
        cmd.env_remove("RUST_BACKTRACE");
        run(cmd, &format!("pg_ctl {args:?}"));
    }

    /// `pg_ctl stop -m immediate` (a crash, as far as the server can tell) and start again.
    pub fn crash_and_restart(&self) {
        self.stop_immediately();
        self.pg_ctl(&["-w", "start"]);
    }

    /// A clean shutdown, `downtime` with the server down, and a start.
    pub fn stop_and_restart_after(&self, downtime: Duration) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
        std::thread::sleep(downtime);
        self.pg_ctl(&["-w", "start"]);
    }

    pub fn connect_to(&self, database: &str, user: &str) -> Client {
        let params = format!("host=127.0.0.1 port={} user={user} dbname={database} connect_timeout=10", self.port);
        Client::connect(&params, NoTls).unwrap_or_else(|e| panic!("connect {params}: {e}"))
    }

    /// A superuser connection to database `postgres`, where the workers attach.
    pub fn connect(&self) -> Client {
        self.connect_to("postgres", "postgres")
    }

    /// Connects, retrying while the server is restarting after a crash.
    pub fn reconnect(&self, timeout: Duration) -> Client {
        let params = format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5", self.port);
        wait_for(timeout, "the server to accept connections again", || {
            Client::connect(&params, NoTls).ok()
        })
    }

    /// Runs one of Postgres's client programs (`pg_dump`, `pg_restore`, `psql`, …) against this
    /// cluster as superuser `postgres` and returns what it printed; panics with its output when
    /// it fails or reports an error.
    pub fn client_program(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(self.bindir.join(program))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() && !stderr.to_lowercase().contains("error"),
            "{program} {args:?} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        stdout.into_owned()
    }

    /// The cluster's scratch directory (its data directory is `data` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = as_cluster_user(&self.bindir.join("pg_ctl"));
        cmd.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-w", "stop"]);
        let _ = cmd.output();
        if std::thread::panicking() {
            eprintln!("cluster kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (e.g. "KILL", "TERM") to a process.
pub fn kill(pid: i32, signal: &str) {
    let out = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).output().expect("kill");
    assert!(out.status.success(), "kill -{signal} {pid}: {}", String::from_utf8_lossy(&out.stderr));
}

/// CPU time (user + system) a process has used, in clock ticks, from /proc.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process is gone");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

impl Cluster {
    /// A fresh preloaded cluster (extra `settings` lines) with the extension created in
    /// `postgres`, and a superuser connection to it.
    pub fn with_extension(name: &str, settings: &[&str]) -> (Cluster, Client) {
        let cluster = Cluster::start(name, true, settings);
        let mut client = cluster.connect();
        client.batch_execute("CREATE EXTENSION pageperfect").unwrap();
        (cluster, client)
    }

    /// Waits for the crash restart that a SIGKILL of a backend causes to end `client`'s
    /// session, then connects again.
    pub fn reconnect_after_crash(&self, mut client: Client) -> Client {
        wait_for(Duration::from_secs(10), "the crash restart", || client.simple_query("SELECT 1").is_err().then_some(()));
        self.reconnect(Duration::from_secs(30))
    }
}

/// The server's message of a failed statement (the `postgres` crate's Display says "db error").
pub fn db_message(err: postgres::Error) -> String {
    err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string())
}

/// The single bigint a query returns.
pub fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// `get_scheduler_health()`'s components and their statuses, in its order.
pub fn scheduler_health(client: &mut Client) -> Vec<(String, String)> {
    client
        .query("SELECT component, status FROM pageperfect.get_scheduler_health()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A table's row count and a digest of its rows in a fixed order: equal digests, equal contents.
pub fn table_digest(client: &mut Client, table: &str) -> String {
    let sql = format!("SELECT count(*) || ' rows ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t");
    client.query_one(&sql, &[]).unwrap_or_else(|e| panic!("{table}: {e}")).get(0)
}
