//! A small HTTP/1.1 server on loopback for the tests: each request is answered by a handler (a
//! fixed table of routes for a web site; code for the model server), one thread per connection.
//! It records the paths requested.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An answer: status, content type, body, extra headers, and how long to wait before sending it.
#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: &'static str,
    /// Shared, so that a 50 MB page is not copied per request.
    pub body: Arc<[u8]>,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Route {
    pub fn html(body: &str) -> Route {
        Route::status(200, "text/html; charset=utf-8", body)
    }

    pub fn status(status: u16, content_type: &'static str, body: &str) -> Route {
        Route { status, content_type, body: Arc::from(body.as_bytes()), delay: Duration::ZERO, headers: vec![] }
    }

    pub fn redirect(location: &str) -> Route {
        Route { headers: vec![("Location".to_string(), location.to_string())], ..Route::status(301, "text/plain", "moved") }
    }

    pub fn delayed(self, delay: Duration) -> Route {
        Route { delay, ..self }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request as the handler sees it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

type Handler = dyn Fn(&Received) -> Route + Send + Sync;

pub struct Site {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? <= 2 {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { method, path, headers, body })
}

fn serve(mut stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<String>>) {
    let Some(request) = read_request(&stream) else { return };
    requests.lock().unwrap().push(request.path.clone());
    let route = handler(&request);
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
    /// Serves `routes` (path → route; anything else is a 404) on 127.0.0.1 until the process ends.
    pub fn start(routes: Vec<(&str, Route)>) -> Site {
        let routes: HashMap<String, Route> = routes.into_iter().map(|(p, r)| (p.to_string(), r)).collect();
        Site::with_handler(move |request| {
            routes.get(&request.path).cloned().unwrap_or_else(|| Route::status(404, "text/plain", "not found"))
        })
    }

    /// Answers every request with `handler` on 127.0.0.1 until the process ends.
    pub fn with_handler(handler: impl Fn(&Received) -> Route + Send + Sync + 'static) -> Site {
        Site::on_host(1, handler)
    }

    /// Answers every request with `handler` on 127.0.0.`n` until the process ends: loopback
    /// addresses are as many hosts to the crawler's per-host limits.
    pub fn on_host(n: u8, handler: impl Fn(&Received) -> Route + Send + Sync + 'static) -> Site {
        Site::listen(TcpListener::bind(("127.0.0.".to_string() + &n.to_string(), 0)).unwrap(), handler)
    }

    /// Answers every request on `listener` with `handler` until the process ends.
    pub fn listen(listener: TcpListener, handler: impl Fn(&Received) -> Route + Send + Sync + 'static) -> Site {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, recorded) = (Arc::clone(&handler), Arc::clone(&recorded));
                std::thread::spawn(move || serve(stream, &*handler, &recorded));
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

const TOPICS: [(&str, &str); 4] = [
    ("French press", "Use a coarse grind and pour water just off the boil over the grounds, then plunge slowly."),
    ("Pour-over", "Rinse the paper filter, bloom the coffee for forty seconds and pour in slow spirals."),
    ("Cold brew", "Steep coarse coffee in cold water for twelve to eighteen hours, then strain it twice."),
    ("Espresso", "Dose eighteen grams, yield thirty-six grams and aim for a shot time of twenty-eight seconds."),
];

/// Page `n` of a coffee-guide site: one of four topics, with navigation, headings, paragraphs, a
/// list and a footer, as real pages have (the benchmark's and the soak's site).
pub fn guide_page(n: usize) -> String {
    let (topic, body) = TOPICS[n % TOPICS.len()];
    format!(
        "<!doctype html><html><head><title>{topic} guide #{n}</title></head><body>\
         <nav><a href='/'>Home</a> <a href='/shop'>Shop</a></nav><main><h1>{topic} guide #{n}</h1>\
         <p>{body}</p><h2>Equipment</h2><p>A scale, a grinder and a kettle make every {topic} brew repeatable.</p>\
         <h2>Troubleshooting</h2><p>Sour coffee means under-extraction: grind finer. Bitter coffee means over-extraction: grind coarser.</p>\
         <ul><li>Weigh the coffee and the water.</li><li>Time every brew.</li></ul></main>\
         <footer>Copyright 2026</footer></body></html>"
    )
}
