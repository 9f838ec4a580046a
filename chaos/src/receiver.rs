//! The callback receiver: a tiny HTTP/1.1 server on `127.0.0.1:0` that stands in for the
//! caller's webhook endpoint. It records every delivery (headers, body, whether the
//! Standard Webhooks signature verifies) and answers most with `200`, a few with `500`
//! so that the server has to retry. It outlives every server incarnation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One delivery the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub webhook_id: Option<String>,
    pub signature_ok: bool,
    pub body: Option<Value>,
    /// Whether we answered 2xx (the delivery counts as accepted).
    pub accepted: bool,
}

impl Delivery {
    pub fn request_id(&self) -> Option<&str> {
        self.body.as_ref()?.get("request_id")?.as_str()
    }

    /// The message id the checker guest put in its reply.
    pub fn message_id(&self) -> Option<u64> {
        self.body.as_ref()?.get("reply")?.get("id")?.as_u64()
    }
}

pub struct Receiver {
    pub addr: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    stop: Arc<AtomicBool>,
}

/// Whether `signature` (a space-separated list of `v1,<base64>`) holds the HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under `secret` (`whsec_` + base64 key).
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(key) = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    signature.split(' ').any(|s| s == expected)
}

impl Receiver {
    /// Start listening; one delivery in `fail_every` is answered 500.
    pub fn start(secret: &str, fail_every: u64) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        {
            let (deliveries, stop, secret) = (deliveries.clone(), stop.clone(), secret.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (deliveries, secret, count) =
                                (deliveries.clone(), secret.clone(), count.clone());
                            std::thread::spawn(move || {
                                serve(stream, &secret, &deliveries, &count, fail_every)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Ok(Receiver {
            addr,
            deliveries,
            stop,
        })
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    secret: &str,
    deliveries: &Mutex<Vec<Delivery>>,
    count: &AtomicU64,
    fail_every: u64,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
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
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        if len > 16 << 20 {
            return;
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let webhook_id = header("webhook-id");
        let signature_ok = match (
            &webhook_id,
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) {
            (Some(id), Some(ts), Some(sig)) => verify(secret, id, &ts, &body, &sig),
            _ => false,
        };
        let n = count.fetch_add(1, Ordering::Relaxed);
        let accepted = fail_every == 0 || n % fail_every != fail_every - 1;
        if let Ok(mut d) = deliveries.lock() {
            d.push(Delivery {
                path,
                webhook_id,
                signature_ok,
                body: serde_json::from_slice(&body).ok(),
                accepted,
            });
        }
        let status = if accepted {
            "200 OK"
        } else {
            "500 Internal Server Error"
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{{}}"
        );
        let out = reader.get_mut();
        if out.write_all(resp.as_bytes()).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// Post a forged delivery to the receiver (the `--inject forged-callback` self-test): the
/// body of a real one under another `webhook-id`, with a signature made with the wrong key.
pub fn forge(addr: &str, path: &str, body: &Value) -> anyhow::Result<()> {
    let body = serde_json::to_vec(body)?;
    let mut s = TcpStream::connect(addr)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         webhook-id: msg_forged\r\nwebhook-timestamp: 0\r\n\
         webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(&body)?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    Ok(())
}
