//! What the web tests share: a real cluster with pageperfect preloaded and tenants in it, and
//! `pageperfect-web` (the binary cargo built for these tests) serving it on a loopback port.

#![allow(dead_code)]

pub mod browser;

use pageperfect_it::postgres::Client;
use pageperfect_it::Cluster;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// alice's token for her server (cron secret `web-alice`).
pub const ALICE_TOKEN: &str = "alice-web-token-0123456789";
/// mallory's token for her own server (cron secret `web-mallory`).
pub const MALLORY_TOKEN: &str = "mallory-web-token-0123456789";

/// A cluster with two tenants, `alice` and `mallory` (LOGIN, members of pageperfect_user, each
/// allowed to verify cron secrets, each with a web secret), and a superuser connection;
/// `settings` are extra postgresql.conf lines.
pub fn cluster_with_tenants(name: &str, settings: &[&str]) -> (Cluster, Client) {
    let (cluster, mut admin) = Cluster::with_extension(name, settings);
    admin
        .batch_execute(&format!(
            "CREATE ROLE alice LOGIN IN ROLE pageperfect_user;
             CREATE ROLE mallory LOGIN IN ROLE pageperfect_user;
             GRANT EXECUTE ON FUNCTION pageperfect.verify_cron_secret(text, text) TO alice, mallory;
             SELECT pageperfect.set_cron_secret('web-alice', '{ALICE_TOKEN}');
             SELECT pageperfect.set_cron_secret('web-mallory', '{MALLORY_TOKEN}');"
        ))
        .unwrap();
    (cluster, admin)
}

/// A running `pageperfect-web`; stopped when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// `pageperfect-web` connected to `cluster` as `role`, checking tokens against the cron
    /// secret `secret_name`, with `extra` arguments.
    pub fn start(cluster: &Cluster, role: &str, secret_name: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let url = format!("postgres://{role}@127.0.0.1:{}/postgres", cluster.port);
        let mut child = Command::new(env!("CARGO_BIN_EXE_pageperfect-web"))
            .args(["--database-url", &url, "--listen", &format!("127.0.0.1:{port}"), "--secret-name", secret_name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pageperfect-web");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "pageperfect-web did not start: {line:?} (exit: {:?})", child.try_wait());
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Status and JSON body of a request.
pub fn send(request: reqwest::blocking::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// Polls until `probe` returns Some, for at most `seconds`.
pub fn eventually<T>(seconds: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < Duration::from_secs(seconds), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
