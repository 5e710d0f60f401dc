//! A small HTTP/1.1 server on loopback for the tests: fixed routes with a status, a content type,
//! a body and an optional delay, one thread per connection. It records the paths requested.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Route {
    pub fn html(body: &str) -> Route {
        Route { status: 200, content_type: "text/html; charset=utf-8", body: body.as_bytes().to_vec(), delay: Duration::ZERO, headers: vec![] }
    }

    pub fn status(status: u16, content_type: &'static str, body: &str) -> Route {
        Route { status, content_type, ..Route::html(body) }
    }
}

pub struct Site {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn serve(mut stream: TcpStream, routes: &HashMap<String, Route>, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    requests.lock().unwrap().push(path.clone());
    let route = routes.get(&path).cloned().unwrap_or_else(|| Route::status(404, "text/plain", "not found"));
    std::thread::sleep(route.delay);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        route.status,
        reason(route.status),
        route.content_type,
        route.body.len()
    );
    for (name, value) in &route.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&route.body));
}

impl Site {
    /// Serves `routes` (path → route) on 127.0.0.1 until the test process ends.
    pub fn start(routes: Vec<(&str, Route)>) -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let routes: Arc<HashMap<String, Route>> = Arc::new(routes.into_iter().map(|(p, r)| (p.to_string(), r)).collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, recorded) = (Arc::clone(&routes), Arc::clone(&recorded));
                std::thread::spawn(move || serve(stream, &routes, &recorded));
            }
        });
        Site { base, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many times `path` was requested.
    pub fn hits(&self, path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|p| *p == path).count()
    }
}
