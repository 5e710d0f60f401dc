//! `serve-dir DIR PORT`: serves the files under DIR on 127.0.0.1:PORT (`/` is `index.html`) with
//! the tests' loopback HTTP server. `make demo` serves its sample site with it.

use pageperfect_it::site::{Route, Site};
use std::net::TcpListener;
use std::path::{Component, Path, PathBuf};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        _ => "application/octet-stream",
    }
}

/// The file a request path names, never outside `root`.
fn file_for(root: &Path, request_path: &str) -> Option<PathBuf> {
    let relative = Path::new(request_path.split(['?', '#']).next()?.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(relative);
    Some(if path.is_dir() { path.join("index.html") } else { path })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: serve-dir DIR PORT");
        std::process::exit(2);
    };
    let root = PathBuf::from(dir);
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("PORT must be a number"))).expect("bind");
    let site = Site::listen(listener, move |request| {
        match file_for(&root, &request.path).and_then(|path| std::fs::read(&path).ok().map(|body| (path, body))) {
            Some((path, body)) => Route::status(200, content_type(&path), &String::from_utf8_lossy(&body)),
            None => Route::status(404, "text/plain", "not found"),
        }
    });
    println!("serving on {}", site.base);
    loop {
        std::thread::park();
    }
}
