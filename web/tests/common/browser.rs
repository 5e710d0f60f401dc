//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol: a page is
//! loaded, its DOM read and clicked with `Runtime.evaluate`, and a screenshot taken with
//! `Page.captureScreenshot`. Each browser gets a new, empty profile directory, removed when it
//! is dropped with the process.

use base64::Engine;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    profile: PathBuf,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    pub fn launch(scratch: &Path) -> Browser {
        let profile = scratch.join(format!("chromium-profile-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1440,1700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium (Debian package chromium; scripts/setup.sh installs it)");
        // Chromium writes the port it chose to DevToolsActivePort in the profile.
        let start = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort")) {
                if let Some(port) = text.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                    break port;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets: Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/list")).unwrap().json().unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .unwrap_or_else(|| panic!("no page target: {targets}"));
        let (socket, _) = tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).expect("DevTools websocket");
        Browser { child, profile, socket, next_id: 0 }
    }

    /// One DevTools command and its result (events that arrive meanwhile are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.socket.send(Message::text(json!({"id": id, "method": method, "params": params}).to_string())).unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is true (an exception, as while the next page loads, counts
    /// as false).
    pub fn wait_until(&mut self, expression: &str, what: &str) {
        let start = Instant::now();
        while self.eval(&format!("(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()")) != Value::Bool(true) {
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; the page says:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_until(&format!("location.href.startsWith({:?}) && document.readyState === 'complete'", url), url);
    }

    /// The page's rendered text.
    pub fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''").as_str().unwrap_or("").to_string()
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
