//! Requests too broken for the app to see: actix-http's parser refuses them itself (a
//! raw 0xFF or a space in the path, a head over its buffer, more than 96 headers, both
//! `Content-Length` and `Transfer-Encoding`, two `Content-Length`s…) and answers an
//! empty `400` or `431` before any handler runs. This module owns the connection wrapper
//! that turns exactly those answers into `application/problem+json`, like every other
//! error of the API.
//!
//! How: actix-http writes such an answer as one fixed head, `HTTP/1.1 400 Bad Request`
//! or `HTTP/1.1 431 Request Header Fields Too Large` followed by `content-length: 0`,
//! (`connection: close`) and `date`, as the last bytes it writes before it closes the
//! connection. The app never answers 400 or 431 without a body, so a write ending in that
//! head is one of them; it is replaced by the same status with a problem body. Everything
//! else passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose parse-error answers carry a problem body.
pub struct ProblemIo<T> {
    inner: T,
    /// A rewritten write still going out: the bytes to send, how many are sent, and how
    /// many of the caller's bytes they stand for.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        ProblemIo {
            inner,
            rewrite: None,
        }
    }
}

/// The status lines actix-http writes for requests it cannot parse.
const STATUS_LINES: [(u16, &[u8]); 2] = [
    (400, b"HTTP/1.1 400 Bad Request\r\n"),
    (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
];
/// The headers after them, up to the date's value (`connection: close` is left out when
/// the broken request followed others on the connection).
const HEADERS: [&[u8]; 2] = [
    b"content-length: 0\r\nconnection: close\r\ndate: ",
    b"content-length: 0\r\ndate: ",
];
/// `Tue, 01 Dec 2026 18:54:02 GMT`
const DATE_LEN: usize = 29;

/// If `buf` ends with a parse-error answer: where it starts, its status and its date.
fn parse_error_answer(buf: &[u8]) -> Option<(usize, u16, &[u8])> {
    STATUS_LINES.iter().find_map(|(status, line)| {
        HEADERS.iter().find_map(|headers| {
            let len = line.len() + headers.len() + DATE_LEN + 4;
            let at = buf.len().checked_sub(len)?;
            let answer = &buf[at..];
            let date_at = line.len() + headers.len();
            let date = &answer[date_at..date_at + DATE_LEN];
            (answer.starts_with(line)
                && answer[line.len()..].starts_with(headers)
                && answer.ends_with(b"\r\n\r\n")
                && date.ends_with(b" GMT")
                && !date.contains(&b'\r'))
            .then_some((at, *status, date))
        })
    })
}

/// The answer with a problem body instead.
fn problem_answer(status: u16, date: &[u8]) -> Vec<u8> {
    let (slug, title, detail) = match status {
        431 => (
            "request-header-fields-too-large",
            "Request Header Fields Too Large",
            "the request's head is too large: at most 96 headers, and the request line \
             and headers together within 128 KiB",
        ),
        _ => (
            "bad-request",
            "Bad Request",
            "the request is not valid HTTP/1.1: a request line with a space or a byte \
             that is not visible ASCII in its target, a malformed header, two \
             Content-Length headers, or Content-Length together with Transfer-Encoding",
        ),
    };
    let body = serde_json::json!({
        "type": format!("https://dwell.dev/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nconnection: close\r\ndate: ",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none() {
            let Some((at, status, date)) = parse_error_answer(buf) else {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            };
            let mut out = buf[..at].to_vec();
            out.extend(problem_answer(status, date));
            this.rewrite = Some((out, 0, buf.len()));
        }
        // The caller writes the same bytes again (and maybe more after them) until it
        // hears how many were taken: they are all taken once the rewrite is out.
        let (out, sent, taken) = this.rewrite.as_mut().expect("set above");
        while *sent < out.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &out[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let taken = *taken;
        this.rewrite = None;
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Tue, 01 Dec 2026 18:54:02 GMT";

    fn head(status: &str) -> Vec<u8> {
        let mut h =
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\ndate: ")
                .into_bytes();
        h.extend_from_slice(DATE);
        h.extend_from_slice(b"\r\n\r\n");
        h
    }

    #[test]
    fn only_actix_parse_error_answers_are_recognised() {
        let bad = head("400 Bad Request");
        assert_eq!(parse_error_answer(&bad), Some((0, 400, DATE)));
        let big = head("431 Request Header Fields Too Large");
        assert_eq!(parse_error_answer(&big), Some((0, 431, DATE)));
        // After a pipelined answer in the same write.
        let mut two = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n".to_vec();
        two.extend(&bad);
        assert_eq!(
            parse_error_answer(&two),
            Some((two.len() - bad.len(), 400, DATE))
        );
        // Without `connection: close`, as after a pipelined request.
        let mut quiet = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: ".to_vec();
        quiet.extend_from_slice(DATE);
        quiet.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_error_answer(&quiet), Some((0, 400, DATE)));
        // Not at the end, another status, or a head with a body: left alone.
        let mut more = bad.clone();
        more.extend(b"x");
        assert_eq!(parse_error_answer(&more), None);
        assert_eq!(parse_error_answer(&head("404 Not Found")), None);
        assert_eq!(parse_error_answer(b"HTTP/1.1 400 Bad Request\r\n"), None);
        assert_eq!(parse_error_answer(b""), None);
    }

    #[test]
    fn the_rewritten_answer_is_problem_json_with_a_matching_length() {
        let out = problem_answer(431, DATE);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 431);
    }
}
