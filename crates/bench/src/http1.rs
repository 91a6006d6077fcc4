//! Just enough HTTP/1.1 for a load generator: requests serialised once up front, responses
//! framed by `Content-Length` or chunked encoding. Far cheaper per request than a general client,
//! so that one load-generator core can outrun one server core.
use std::io;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Serialises a request. `headers` must already be valid header names and values.
pub fn serialize_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A complete response at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    pub status: u16,
    /// Where the body starts.
    pub body_start: usize,
    /// Bytes of head and body.
    pub len: usize,
    /// The server announced it closes the connection.
    pub close: bool,
}

/// Where `needle` first occurs in `hay` at or after `from` (an empty needle is found at `from`).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return (from <= hay.len()).then_some(from);
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Parses the response at the start of `buf`: `Ok(None)` while incomplete.
pub fn frame(buf: &[u8]) -> io::Result<Option<Framed>> {
    let Some(head_end) = find(buf, b"\r\n\r\n", 0) else {
        return if buf.len() > MAX_HEAD {
            Err(invalid("response head too long"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") {
        return Err(invalid("not an HTTP/1 response"));
    }
    let status: u16 = status_line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_start = head_end + 4;
    let len = if chunked {
        match chunked_len(buf, body_start)? {
            Some(end) => end,
            None => return Ok(None),
        }
    } else if let Some(l) = length {
        body_start + l
    } else if status / 100 == 1 || status == 204 || status == 304 {
        body_start
    } else {
        return Err(invalid("response without length"));
    };
    Ok((buf.len() >= len).then_some(Framed {
        status,
        body_start,
        len,
        close,
    }))
}

/// The end of a chunked body starting at `pos`, or `None` while incomplete.
fn chunked_len(buf: &[u8], mut pos: usize) -> io::Result<Option<usize>> {
    loop {
        let Some(line_end) = find(buf, b"\r\n", pos) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| invalid("bad chunk"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers (usually none) end with an empty line.
            if buf.len() < pos + 2 {
                return Ok(None);
            }
            if &buf[pos..pos + 2] == b"\r\n" {
                return Ok(Some(pos + 2));
            }
            return Ok(find(buf, b"\r\n\r\n", pos).map(|e| e + 4));
        }
        pos += size + 2;
        if pos > buf.len() {
            return Ok(None);
        }
    }
}

/// What a response said, as far as a load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The connection can carry the next request.
    pub keep_alive: bool,
    /// The body held the expected text (always true when none was expected).
    pub expected: bool,
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: std::net::SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and reads its response.
    pub async fn exchange(&mut self, request: &[u8], expect: Option<&[u8]>) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(f) = frame(&self.buf)? {
                let body = &self.buf[f.body_start..f.len];
                let expected = expect.is_none_or(|e| find(body, e, 0).is_some());
                self.buf.drain(..f.len);
                return Ok(Answer {
                    status: f.status,
                    keep_alive: !f.close,
                    expected,
                });
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_length_and_headers() {
        let r = serialize_request(
            "POST",
            "/v1/verify",
            "127.0.0.1:1",
            &[("authorization".into(), "Bearer x".into())],
            b"{}",
        );
        assert_eq!(
            r,
            b"POST /v1/verify HTTP/1.1\r\nhost: 127.0.0.1:1\r\nauthorization: Bearer x\r\ncontent-length: 2\r\n\r\n{}"
        );
        let g = serialize_request("GET", "/", "h", &[], b"");
        assert_eq!(g, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    }

    #[test]
    fn frames_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(
            frame(r).unwrap(),
            Some(Framed {
                status: 200,
                body_start: 38,
                len: 43,
                close: false
            })
        );
        assert_eq!(frame(&r[..40]).unwrap(), None);
        assert_eq!(frame(&r[..10]).unwrap(), None);
    }

    #[test]
    fn frames_chunked_and_close() {
        let r = b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let f = frame(r).unwrap().unwrap();
        assert_eq!((f.status, f.len, f.close), (401, r.len(), true));
        for cut in 0..r.len() {
            assert_eq!(frame(&r[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn rejects_garbage_and_missing_length() {
        assert!(frame(b"SSH-2.0\r\n\r\n").is_err());
        assert!(frame(b"HTTP/1.1 200 OK\r\n\r\nbody").is_err());
        assert_eq!(
            frame(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .len,
            27
        );
    }
}
