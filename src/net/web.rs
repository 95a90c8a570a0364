//! The web server of `continuity broker --web`: the smart-TV web app (built into the binary),
//! a media folder with HTTP range requests (`--media`), and MQTT over WebSockets at `/mqtt`,
//! passed through to the embedded broker's WebSocket listener, so that a TV needs one address.
//!
//! HTTP/1.1 with keep-alive, `GET` and `HEAD` only, no request bodies. Every byte a client
//! sends is untrusted: a request head is at most 16 KiB and must arrive within 30 s, a media
//! path is refused unless each segment is a plain name and the file lies inside the folder
//! (symbolic links that leave it included), and a malformed request gets its status code and
//! a closed connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The largest request head taken.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may take to send a request head (and stay idle between requests).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 256;
/// Chunk size when sending a file.
const CHUNK: usize = 64 * 1024;

/// The web app's files, built into the binary: (path on the server, content).
pub const ASSETS: &[(&str, &[u8])] = &[
    ("/index.html", include_bytes!("../../web/app/index.html")),
    ("/app.css", include_bytes!("../../web/app/app.css")),
    ("/app.js", include_bytes!("../../web/app/app.js")),
    ("/device.js", include_bytes!("../../web/app/device.js")),
    ("/mqtt.js", include_bytes!("../../web/app/mqtt.js")),
    ("/keeper.js", include_bytes!("../../web/app/keeper.js")),
    ("/keystore.js", include_bytes!("../../web/app/keystore.js")),
    ("/player.js", include_bytes!("../../web/app/player.js")),
    ("/icon.svg", include_bytes!("../../web/app/icon.svg")),
    (
        "/contract/bytes.js",
        include_bytes!("../../web/contract/bytes.js"),
    ),
    (
        "/contract/crypto.js",
        include_bytes!("../../web/contract/crypto.js"),
    ),
    (
        "/contract/json.js",
        include_bytes!("../../web/contract/json.js"),
    ),
    (
        "/contract/pairing.js",
        include_bytes!("../../web/contract/pairing.js"),
    ),
    (
        "/contract/seal.js",
        include_bytes!("../../web/contract/seal.js"),
    ),
    (
        "/contract/wire.js",
        include_bytes!("../../web/contract/wire.js"),
    ),
];

/// What the web server serves besides the app.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Served under `/media/`, with range requests.
    pub media: Option<PathBuf>,
    /// The broker's MQTT-over-WebSockets listener, reached at `/mqtt`.
    pub mqtt_ws: Option<SocketAddr>,
}

/// Why the web server did not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("port {port} on {ip} is in use (another server?); choose another with --web {ip}:PORT")]
    PortInUse { ip: std::net::IpAddr, port: u16 },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--media {path}: {why}")]
    Media { path: PathBuf, why: String },
}

/// A running web server; it stops when dropped.
pub struct WebServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    /// The media folder, canonical.
    media: Option<PathBuf>,
    mqtt_ws: Option<SocketAddr>,
}

impl WebServer {
    /// Listen on `listen` (port 0 picks a free port) and serve until dropped. Needs a tokio
    /// runtime.
    pub async fn start(listen: SocketAddr, cfg: WebConfig) -> Result<WebServer, WebError> {
        let media = match cfg.media {
            None => None,
            Some(p) => {
                let canonical = std::fs::canonicalize(&p).map_err(|e| WebError::Media {
                    path: p.clone(),
                    why: e.to_string(),
                })?;
                if !canonical.is_dir() {
                    return Err(WebError::Media {
                        path: p,
                        why: "not a folder".into(),
                    });
                }
                Some(canonical)
            }
        };
        let listener = TcpListener::bind(listen).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                WebError::PortInUse {
                    ip: listen.ip(),
                    port: listen.port(),
                }
            } else {
                WebError::Bind {
                    addr: listen,
                    source,
                }
            }
        })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            media,
            mqtt_ws: cfg.mqtt_ws,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(WebServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port/`, where a browser on this machine opens the app.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The URLs to open on another device: one per LAN address when the server listens on
    /// every interface, else the one address it listens on.
    pub fn lan_urls(&self) -> Vec<String> {
        if !self.addr.ip().is_unspecified() {
            return vec![self.url()];
        }
        let v6 = self.addr.is_ipv6();
        let mut urls: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback() && (v6 || i.ip().is_ipv4()))
            .map(|i| format!("http://{}/", SocketAddr::new(i.ip(), self.addr.port())))
            .collect();
        urls.sort();
        urls.dedup();
        if urls.is_empty() {
            urls.push(format!("http://127.0.0.1:{}/", self.addr.port()));
        }
        urls
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Err(e) = serve_connection(stream, &shared).await {
                        tracing::debug!("web: connection from {peer}: {e}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("web: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    /// The path, percent-decoded, without the query.
    path: String,
    headers: Vec<(String, String)>,
    /// HTTP/1.0 without keep-alive, or `Connection: close`.
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request head is refused: the status to answer with.
#[derive(Debug, PartialEq)]
struct Refusal(u16, &'static str);

/// The end of the head (after the blank line) in `buf`, if it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal(400, "request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal(400, "malformed request line"));
    };
    let keep_alive_default = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Refusal(505, "only HTTP/1.0 and HTTP/1.1")),
    };
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal(400, "malformed header line"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(Refusal(400, "malformed header name"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let raw_path = target.split(['?', '#']).next().unwrap_or_default();
    if !raw_path.starts_with('/') {
        return Err(Refusal(400, "the request target must be a path"));
    }
    let path = percent_decode(raw_path).ok_or(Refusal(400, "malformed percent-encoding"))?;
    let mut req = Request {
        method: method.to_owned(),
        path,
        headers,
        close: !keep_alive_default,
    };
    if let Some(c) = req.header("connection") {
        let tokens = c.to_ascii_lowercase();
        if tokens.split(',').any(|t| t.trim() == "close") {
            req.close = true;
        } else if tokens.split(',').any(|t| t.trim() == "keep-alive") {
            req.close = false;
        }
    }
    let has_body = req.header("transfer-encoding").is_some()
        || req
            .header("content-length")
            .is_some_and(|l| l.trim() != "0");
    if has_body {
        return Err(Refusal(413, "request bodies are not taken"));
    }
    Ok(req)
}

/// `%XX` decoded; `None` when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn serve_connection(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                return respond_error(&mut stream, 431, "request head too large").await;
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout(HEAD_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if end > MAX_HEAD {
            return respond_error(&mut stream, 431, "request head too large").await;
        }
        let req = match parse_head(&buf[..end]) {
            Ok(r) => r,
            Err(Refusal(code, why)) => return respond_error(&mut stream, code, why).await,
        };
        if req.path == "/mqtt" && is_upgrade(&req) {
            // The whole conversation from here on is the broker's: pass it through, head
            // and any bytes after it included.
            return match shared.mqtt_ws {
                Some(ws) => relay(stream, ws, &buf).await,
                None => respond_error(&mut stream, 404, "no MQTT over WebSockets here").await,
            };
        }
        let close = req.close;
        serve(&mut stream, &req, shared).await?;
        buf.drain(..end);
        if close {
            return Ok(());
        }
    }
}

fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

async fn relay(mut client: TcpStream, ws: SocketAddr, head: &[u8]) -> std::io::Result<()> {
    let mut broker = match TcpStream::connect(ws).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("web: the broker's WebSocket listener {ws} is not reachable: {e}");
            return respond_error(&mut client, 502, "the broker is not reachable").await;
        }
    };
    let _ = broker.set_nodelay(true);
    broker.write_all(head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
    Ok(())
}

/// Security headers on every answer: the app talks only to its own origin (and the
/// WebSocket), and plays media from wherever a session's URI points.
const COMMON_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; \
    media-src 'self' http: https: blob:; img-src 'self' http: https: data:; \
    style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'\r\n";

async fn respond_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    why: &str,
) -> std::io::Result<()> {
    let body = format!("{code} {}: {why}\n", reason(code));
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{COMMON_HEADERS}\r\n",
        reason(code),
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.flush().await
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("webm") => "video/webm",
        Some("mp4" | "m4v") => "video/mp4",
        Some("m4a") => "audio/mp4",
        Some("mkv") => "video/x-matroska",
        Some("ogv" | "ogg") => "video/ogg",
        Some("oga" | "opus") => "audio/ogg",
        Some("mp3") => "audio/mpeg",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

async fn serve(stream: &mut TcpStream, req: &Request, shared: &Shared) -> std::io::Result<()> {
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return respond_error(stream, 405, "only GET and HEAD").await,
    };
    if let Some(rel) = req.path.strip_prefix("/media/") {
        let Some(root) = &shared.media else {
            return respond_error(stream, 404, "no media folder (--media DIR)").await;
        };
        if rel.is_empty() {
            let body = serde_json::json!({ "v": 1, "files": list_media(root) }).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Cache-Control: no-cache\r\n{COMMON_HEADERS}\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            if !head_only {
                stream.write_all(body.as_bytes()).await?;
            }
            return stream.flush().await;
        }
        return match media_file(root, rel) {
            Ok(path) => send_file(stream, req, &path, head_only).await,
            Err(Refusal(code, why)) => {
                if code == 403 {
                    tracing::warn!("web: refused media path {:?}: {why}", req.path);
                }
                respond_error(stream, code, why).await
            }
        };
    }
    let path = if req.path == "/" {
        "/index.html"
    } else {
        &req.path
    };
    let Some((_, body)) = ASSETS.iter().find(|(p, _)| *p == path) else {
        return respond_error(stream, 404, "no such page").await;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\n{COMMON_HEADERS}\r\n",
        content_type(path),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.flush().await
}

/// How deep, and how many files, the listing of `/media/` goes.
const LIST_DEPTH: usize = 4;
const LIST_MAX: usize = 10_000;

/// The files of the media folder, as paths relative to it (`films/a.webm`), sorted: what
/// `/media/<path>` serves. Hidden names and symbolic links are left out.
fn list_media(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if out.len() >= LIST_MAX {
                return;
            }
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Ok(kind) = e.file_type() else {
                continue;
            };
            if name.starts_with('.') || kind.is_symlink() {
                continue;
            }
            let rel = format!("{prefix}{name}");
            if kind.is_dir() && depth < LIST_DEPTH {
                walk(&e.path(), &format!("{rel}/"), depth + 1, out);
            } else if kind.is_file() {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", 1, &mut out);
    out.sort();
    out
}

/// The file for `/media/<rel>` inside `root` (canonical), or why not.
fn media_file(root: &Path, rel: &str) -> Result<PathBuf, Refusal> {
    let mut path = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains(['\\', '\0']) {
            return Err(Refusal(403, "not a plain file name"));
        }
        path.push(seg);
    }
    let canonical = std::fs::canonicalize(&path).map_err(|_| Refusal(404, "no such media"))?;
    if !canonical.starts_with(root) {
        return Err(Refusal(403, "outside the media folder"));
    }
    if !canonical.is_file() {
        return Err(Refusal(404, "not a file"));
    }
    Ok(canonical)
}

/// What a `Range` header asks of a `len`-byte file: `Ok(None)` the whole file (no header,
/// or one this server ignores as RFC 9110 allows: another unit, several ranges, bad syntax),
/// `Ok(Some((first, last)))` inclusive bytes, `Err(())` not satisfiable (416).
fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            None => Ok(None),
            Some(0) => Err(()),
            Some(_) if len == 0 => Err(()),
            Some(n) => Ok(Some((len.saturating_sub(n), len - 1))),
        },
        (first, last) => {
            let Some(first) = num(first) else {
                return Ok(None);
            };
            let last = if last.is_empty() {
                None
            } else {
                match num(last) {
                    Some(l) if l >= first => Some(l),
                    _ => return Ok(None),
                }
            };
            if first >= len {
                return Err(());
            }
            Ok(Some((first, last.unwrap_or(len - 1).min(len - 1))))
        }
    }
}

async fn send_file(
    stream: &mut TcpStream,
    req: &Request,
    path: &Path,
    head_only: bool,
) -> std::io::Result<()> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return respond_error(stream, 404, "cannot open the media").await,
    };
    let len = file.metadata().await?.len();
    let ctype = content_type(&path.to_string_lossy());
    let (status, first, count, range_header) = match byte_range(req.header("range"), len) {
        Ok(None) => (200, 0, len, String::new()),
        Ok(Some((a, b))) => (
            206,
            a,
            b - a + 1,
            format!("Content-Range: bytes {a}-{b}/{len}\r\n"),
        ),
        Err(()) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\n{COMMON_HEADERS}\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            return stream.flush().await;
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {count}\r\n\
         Accept-Ranges: bytes\r\n{range_header}Cache-Control: no-cache\r\n{COMMON_HEADERS}\r\n",
        reason(status)
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        file.seek(std::io::SeekFrom::Start(first)).await?;
        copy_exact(&mut file.take(count), stream, count).await?;
    }
    stream.flush().await
}

async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    count: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = count;
    while left > 0 {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // The file shrank while it was sent: the length promised cannot be kept.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the media file shrank while it was sent",
            ));
        }
        w.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_app_is_built_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        for (dir, prefix) in [("app", "/"), ("contract", "/contract/")] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                on_disk.push(format!("{prefix}{name}"));
            }
        }
        on_disk.sort();
        let mut built: Vec<String> = ASSETS.iter().map(|(p, _)| p.to_string()).collect();
        built.sort();
        assert_eq!(
            built, on_disk,
            "src/net/web.rs ASSETS must list web/app and web/contract"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=90-500"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-500"), 100), Ok(Some((0, 99))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=0-"), 0), Err(()));
        // Ignored, as RFC 9110 allows: the whole file.
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=9-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=x-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=+1-2"), 100), Ok(None));
        assert_eq!(
            byte_range(Some("bytes=99999999999999999999999-"), 100),
            Ok(None)
        );
    }

    #[test]
    fn request_heads() {
        let r = parse_head(b"GET /media/My%20Clip.webm?x=1 HTTP/1.1\r\nRange: bytes=0-\r\n\r\n")
            .unwrap();
        assert_eq!(r.path, "/media/My Clip.webm");
        assert_eq!(r.header("range"), Some("bytes=0-"));
        assert!(!r.close);
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().close);
        assert_eq!(
            parse_head(b"GET / HTTP/2\r\n\r\n"),
            Err(Refusal(505, "only HTTP/1.0 and HTTP/1.1"))
        );
        assert_eq!(parse_head(b"GET /%zz HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(parse_head(b"GET /%ff HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(
            parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n").unwrap_err().0,
            400
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
                .unwrap_err()
                .0,
            413
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(parse_head(b"GET  / HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
    }

    #[test]
    fn media_paths_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("films")).unwrap();
        std::fs::write(root.join("films/a.webm"), b"x").unwrap();
        std::fs::write(root.join(".hidden"), b"x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link.webm")).unwrap();
        assert!(media_file(&root, "films/a.webm").is_ok());
        assert_eq!(media_file(&root, "../etc/passwd").unwrap_err().0, 403);
        assert_eq!(
            media_file(&root, "films/../films/a.webm").unwrap_err().0,
            403
        );
        assert_eq!(media_file(&root, ".hidden").unwrap_err().0, 403);
        assert_eq!(media_file(&root, "films//a.webm").unwrap_err().0, 403);
        assert_eq!(media_file(&root, "link.webm").unwrap_err().0, 403);
        assert_eq!(media_file(&root, "films").unwrap_err().0, 404);
        assert_eq!(media_file(&root, "none.webm").unwrap_err().0, 404);
        assert_eq!(list_media(&root), ["films/a.webm"]);
    }
}
