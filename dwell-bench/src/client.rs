//! The load generator's HTTP clients: `RawConn` (a minimal HTTP/1.1 keep-alive client
//! over one `TcpStream`), `Client` (raw or ureq, with the tenant's bearer key) and
//! `Target` (where and how to connect).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::Value;

use crate::util::body_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClientKind {
    Raw,
    Ureq,
}

/// A minimal HTTP/1.1 keep-alive client over one `TcpStream` (no pipelining).
pub(crate) struct RawConn {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    last_used: Instant,
    retries: u64,
    connects: u64,
}

impl RawConn {
    fn new(addr: SocketAddr) -> Self {
        RawConn {
            addr,
            conn: None,
            last_used: Instant::now(),
            retries: 0,
            connects: 0,
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        self.conn = Some(BufReader::with_capacity(16 * 1024, s));
        self.connects += 1;
        Ok(())
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        // The server closes keep-alive connections idle for 5 s; do not race it.
        if self.last_used.elapsed() > Duration::from_secs(2) {
            self.conn = None;
        }
        let mut msg = Vec::with_capacity(160 + body.len());
        write!(
            msg,
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n",
            body.len()
        )?;
        for (k, v) in headers {
            write!(msg, "{k}: {v}\r\n")?;
        }
        msg.extend_from_slice(b"\r\n");
        msg.extend_from_slice(body);
        let fresh = self.conn.is_none();
        if fresh {
            self.connect()?;
        }
        let result = self.exchange(&msg);
        let result = match result {
            // A reused connection the server had already closed (it closes idle ones):
            // the request was not processed; send it once more on a new connection. A
            // request processed twice would show up in the totals the scenarios check.
            Err((_, false)) if !fresh => {
                self.retries += 1;
                self.connect()?;
                self.exchange(&msg)
            }
            r => r,
        };
        self.last_used = Instant::now();
        match result {
            Ok((status, body, close)) => {
                if close {
                    self.conn = None;
                }
                Ok((status, body))
            }
            Err((e, _)) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Send one request and read its response. The error's flag is false only when the
    /// connection turned out to be closed (reset, or EOF before any response byte).
    fn exchange(&mut self, msg: &[u8]) -> Result<(u16, Vec<u8>, bool), (io::Error, bool)> {
        let r = self
            .conn
            .as_mut()
            .ok_or_else(|| (io::Error::other("not connected"), false))?;
        r.get_mut().write_all(msg).map_err(|e| (e, false))?;
        let mut line = Vec::with_capacity(64);
        match r.read_until(b'\n', &mut line) {
            Ok(0) => {
                return Err((
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                    false,
                ));
            }
            Ok(_) => {}
            Err(e) => {
                let closed = matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                );
                return Err((e, !closed));
            }
        }
        read_rest(r, &line).map_err(|e| (e, true))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parse a response whose status line is `status_line`.
fn read_rest(r: &mut BufReader<TcpStream>, status_line: &[u8]) -> io::Result<(u16, Vec<u8>, bool)> {
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {:?}", body_text(status_line))))?;
    let mut len: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    let mut line = Vec::with_capacity(128);
    for _ in 0..200 {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end();
        if l.is_empty() {
            let body = if chunked {
                read_chunked(r)?
            } else if let Some(n) = len {
                let mut b = vec![0; n];
                r.read_exact(&mut b)?;
                b
            } else if status == 204 || status == 304 || (100..200).contains(&status) {
                Vec::new()
            } else {
                close = true;
                let mut b = Vec::new();
                r.take(64 << 20).read_to_end(&mut b)?;
                b
            };
            return Ok((status, body, close));
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad(format!("bad header line {l:?}")));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse().map_err(|_| bad("bad content-length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Err(bad("too many headers"))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    for _ in 0..1_000_000 {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        let size = String::from_utf8_lossy(&line);
        let size = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if n == 0 {
            // Trailers, then the empty line.
            for _ in 0..100 {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 || line == b"\r\n" {
                    return Ok(body);
                }
            }
            return Err(bad("too many trailers"));
        }
        if body.len() + n > 64 << 20 {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + n + 2, 0);
        r.read_exact(&mut body[start..])?;
        body.truncate(start + n);
    }
    Err(bad("too many chunks"))
}

/// A connection to the server; every request carries the tenant's bearer key, if any.
pub(crate) enum Client {
    Raw(RawConn, Option<Arc<str>>),
    Ureq {
        agent: ureq::Agent,
        base: String,
        auth: Option<Arc<str>>,
    },
}

impl Client {
    fn new(kind: ClientKind, addr: SocketAddr, auth: Option<Arc<str>>) -> Self {
        match kind {
            ClientKind::Raw => Client::Raw(RawConn::new(addr), auth),
            ClientKind::Ureq => Client::Ureq {
                agent: ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .new_agent(),
                base: format!("http://{addr}"),
                auth,
            },
        }
    }

    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        match self {
            Client::Raw(c, auth) => {
                let bearer = auth.as_deref().map(|k| format!("Bearer {k}"));
                let mut headers = Vec::with_capacity(2);
                if method != "GET" {
                    headers.push(("content-type", content_type));
                }
                if let Some(b) = &bearer {
                    headers.push(("authorization", b.as_str()));
                }
                c.request(method, path, &headers, body)
                    .map_err(|e| format!("{method} {path}: {e}"))
            }
            Client::Ureq { agent, base, auth } => {
                let url = format!("{base}{path}");
                let bearer = auth
                    .as_deref()
                    .map_or(String::new(), |k| format!("Bearer {k}"));
                let resp = match method {
                    "GET" => agent.get(&url).header("authorization", &bearer).call(),
                    "PUT" => agent
                        .put(&url)
                        .header("authorization", &bearer)
                        .content_type(content_type)
                        .send(body),
                    _ => agent
                        .post(&url)
                        .header("authorization", &bearer)
                        .content_type(content_type)
                        .send(body),
                };
                let mut resp = resp.map_err(|e| format!("{method} {path}: {e}"))?;
                let status = resp.status().as_u16();
                let bytes = resp
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
                Ok((status, bytes))
            }
        }
    }

    pub(crate) fn post_json(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        self.send("POST", path, "application/json", body)
    }

    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.send("GET", path, "", &[])
    }

    pub(crate) fn get_json(&mut self, path: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.get(path)?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("GET {path}: {e}")),
            404 => Ok(None),
            s => Err(format!("GET {path}: {s} {}", body_text(&body))),
        }
    }

    pub(crate) fn retries(&self) -> u64 {
        match self {
            Client::Raw(c, _) => c.retries,
            Client::Ureq { .. } => 0,
        }
    }

    pub(crate) fn connects(&self) -> u64 {
        match self {
            Client::Raw(c, _) => c.connects,
            Client::Ureq { .. } => 0,
        }
    }
}

/// Where and how to connect: the server's address, the client kind, the tenant key.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) kind: ClientKind,
    pub(crate) auth: Option<Arc<str>>,
}

impl Target {
    pub(crate) fn client(&self) -> Client {
        Client::new(self.kind, self.addr, self.auth.clone())
    }
}
