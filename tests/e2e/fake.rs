//! A fake external service on 127.0.0.1:0: a tiny HTTP/1.1 server that records every
//! request and answers each with what a script decides. Stands in for a boarding-pass
//! service, a payment provider, a booking service or a callback receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("fake received a JSON body")
    }
}

/// What the fake answers: status, extra headers, body. `None` drops the connection
/// without answering (a connect-level failure for the client).
pub type Answer = Option<(u16, Vec<(String, String)>, String)>;

pub fn answer(status: u16, body: &str) -> Answer {
    Some((status, vec![], body.to_owned()))
}

type Script = Box<dyn FnMut(&Received, usize) -> Answer + Send>;

pub struct FakeService {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl FakeService {
    /// Start a fake whose `script` sees each request and its 0-based index.
    pub fn start(script: impl FnMut(&Received, usize) -> Answer + Send + 'static) -> FakeService {
        Self::start_with(None, script)
    }

    /// The same over HTTPS with this server configuration (certificate and key).
    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        script: impl FnMut(&Received, usize) -> Answer + Send + 'static,
    ) -> FakeService {
        Self::start_with(Some(tls), script)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl FnMut(&Received, usize) -> Answer + Send + 'static,
    ) -> FakeService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake service");
        listener.set_nonblocking(true).expect("nonblocking");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let received = received.clone();
                            let script = script.clone();
                            let tls = tls.clone();
                            std::thread::spawn(move || {
                                let _ = stream.set_nonblocking(false);
                                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                                match tls {
                                    None => serve(stream, received, script),
                                    Some(config) => {
                                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                                            return;
                                        };
                                        let stream = rustls::StreamOwned::new(conn, stream);
                                        serve(stream, received, script)
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        FakeService {
            url,
            received,
            stop,
        }
    }

    /// The host:port, for the server's allowlist.
    pub fn host_port(&self) -> String {
        let url = self.url.trim_start_matches("http://");
        url.trim_start_matches("https://").to_owned()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: impl Read + Write,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Received {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        };
        let index = {
            let mut r = received.lock().unwrap();
            r.push(req.clone());
            r.len() - 1
        };
        let ans = (script.lock().unwrap())(&req, index);
        let Some((status, extra, body)) = ans else {
            return; // drop the connection unanswered
        };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&body);
        let out = reader.get_mut();
        if out.write_all(resp.as_bytes()).is_err() || out.flush().is_err() {
            return;
        }
    }
}
