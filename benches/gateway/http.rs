//! A minimal HTTP/1.1 client over one keep-alive connection: enough for the gateway and the
//! sandbox (Content-Length or chunked bodies) and for SSE streams (chunked, read event by event).
//!
//! It is deliberately tiny: the load generator shares two cores with what it measures, so every
//! microsecond it spends per request is one the servers do not get. Requests are pre-formatted
//! (`head`), written with one syscall, and responses are parsed only as far as the status, the
//! body length and `Mcp-Session-Id`.

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The start of a request: the request line and headers, without Content-Length and the blank
/// line (`Conn::send` adds both).
pub fn head(method: &str, path: &str, addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head
}

/// What one request returned.
pub struct Response {
    pub status: u16,
    /// The `Mcp-Session-Id` header, if any.
    pub session: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        match text.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.into_owned(),
        }
    }

    pub fn contains(&self, needle: &[u8]) -> bool {
        contains(&self.body, needle)
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    session: Option<String>,
}

/// One keep-alive connection.
pub struct Conn {
    io: BufReader<TcpStream>,
    line: String,
    out: Vec<u8>,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            io: BufReader::with_capacity(8 * 1024, stream),
            line: String::new(),
            out: Vec::with_capacity(2048),
        })
    }

    /// Sends `head` (see `head()`) with `body` and reads the whole response. A non-empty body
    /// gets its Content-Length; an empty one is sent without (GET).
    pub async fn send(&mut self, head: &str, body: &[u8]) -> io::Result<Response> {
        self.write(head, body).await?;
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        Ok(Response {
            status: head.status,
            session: head.session,
            body,
        })
    }

    async fn write(&mut self, head: &str, body: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(head.as_bytes());
        if !body.is_empty() {
            self.out.extend_from_slice(b"content-length: ");
            self.out
                .extend_from_slice(body.len().to_string().as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.io.get_mut().write_all(&self.out).await
    }

    /// The next line without its line ending; an error at the end of the stream.
    async fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.io.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }

    async fn read_head(&mut self) -> io::Result<Head> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {status_line:?}")))?;
        let mut head = Head {
            status,
            length: None,
            chunked: false,
            session: None,
        };
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                head.session = Some(value.to_string());
            }
        }
    }

    async fn read_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        if head.chunked {
            while self.read_chunk(&mut body).await? {}
        } else if let Some(length) = head.length {
            body.resize(length, 0);
            self.io.read_exact(&mut body).await?;
        } else if head.status >= 200 && head.status != 204 && head.status != 304 {
            self.io.read_to_end(&mut body).await?;
        }
        Ok(body)
    }

    /// Appends one chunk of a chunked body to `into`; false at the last (empty) chunk.
    async fn read_chunk(&mut self, into: &mut Vec<u8>) -> io::Result<bool> {
        let line = self.read_line().await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("not a chunk size: {size:?}")))?;
        if size == 0 {
            // Trailers, then the blank line.
            while !self.read_line().await?.is_empty() {}
            return Ok(false);
        }
        let start = into.len();
        into.resize(start + size, 0);
        self.io.read_exact(&mut into[start..]).await?;
        self.read_line().await?;
        Ok(true)
    }
}

/// One server-sent event.
pub struct Event {
    pub name: String,
    pub data: String,
}

/// An open `text/event-stream` response, read event by event.
pub struct EventStream {
    conn: Conn,
    buffer: Vec<u8>,
}

impl EventStream {
    /// Sends `head` (a GET) on a new connection; anything but a 200 is an error naming the body.
    pub async fn open(addr: SocketAddr, head: &str) -> io::Result<EventStream> {
        let mut conn = Conn::connect(addr).await?;
        conn.write(head, b"").await?;
        let response_head = conn.read_head().await?;
        if response_head.status != 200 {
            let body = conn.read_body(&response_head).await.unwrap_or_default();
            return Err(io::Error::other(format!(
                "the stream was refused: {} {}",
                response_head.status,
                String::from_utf8_lossy(&body)
            )));
        }
        if !response_head.chunked {
            return Err(invalid("an event stream that is not chunked"));
        }
        Ok(EventStream {
            conn,
            buffer: Vec::new(),
        })
    }

    /// The next event (comments such as keep-alive pings are skipped).
    pub async fn next_event(&mut self) -> io::Result<Event> {
        loop {
            if let Some(end) = find(&self.buffer, b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&raw[..end]);
                let mut event = Event {
                    name: "message".to_string(),
                    data: String::new(),
                };
                let mut fields = 0;
                for line in text.split('\n') {
                    let line = line.trim_end_matches('\r');
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim_start().to_string();
                        fields += 1;
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if fields > 0 && !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                        fields += 1;
                    }
                }
                if fields > 0 {
                    return Ok(event);
                }
                continue;
            }
            if !self.conn.read_chunk(&mut self.buffer).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the event stream ended",
                ));
            }
        }
    }
}
