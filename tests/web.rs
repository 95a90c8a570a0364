//! The web server of `continuity broker --web` over real sockets: the app, the media folder
//! with range requests, and what it does with requests it must not serve.

use std::time::Duration;

use continuity::net::web::{WebConfig, WebServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, headers (names lower-cased), body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read one response from `s` (Content-Length framed), leaving what follows.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Response {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "the server closed before answering");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let len = if head_only { 0 } else { len };
    while buf.len() < end + len {
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body was cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Response {
        status,
        headers,
        body,
    }
}

async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_response(&mut s, &mut Vec::new(), raw.starts_with(b"HEAD")).await
}

/// A server with a media folder holding a 1,000-byte file (bytes 0, 1, … 255, 0, …).
async fn server() -> (WebServer, tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let clip: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    std::fs::write(dir.path().join("clip.webm"), &clip).unwrap();
    std::fs::write(dir.path().join("clip.en.vtt"), b"WEBVTT\n").unwrap();
    std::fs::write(dir.path().join(".secret"), b"no").unwrap();
    let cfg = WebConfig {
        media: Some(dir.path().to_path_buf()),
        mqtt_ws: None,
    };
    let w = WebServer::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    (w, dir, clip)
}

#[tokio::test]
async fn the_app_is_served_with_its_security_headers() {
    let (w, _dir, _) = server().await;
    let r = request(w.addr(), b"GET / HTTP/1.1\r\nHost: tv\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(String::from_utf8_lossy(&r.body).contains("<script type=\"module\" src=\"app.js\">"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self' ws: wss:"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let js = request(w.addr(), b"GET /contract/seal.js HTTP/1.1\r\n\r\n").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let missing = request(w.addr(), b"GET /nothing.js HTTP/1.1\r\n\r\n").await;
    assert_eq!(missing.status, 404);
    // No WebSocket listener behind /mqtt here: a clear 404, not a hang.
    let ws = request(
        w.addr(),
        b"GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    assert_eq!(ws.status, 404);
}

#[tokio::test]
async fn media_is_served_whole_or_by_range() {
    let (w, _dir, clip) = server().await;
    let whole = request(w.addr(), b"GET /media/clip.webm HTTP/1.1\r\n\r\n").await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, clip);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-type"), Some("video/webm"));
    let part = request(
        w.addr(),
        b"GET /media/clip.webm HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n",
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(part.body, &clip[10..20]);
    let tail = request(
        w.addr(),
        b"GET /media/clip.webm HTTP/1.1\r\nRange: bytes=-100\r\n\r\n",
    )
    .await;
    assert_eq!((tail.status, tail.body.as_slice()), (206, &clip[900..]));
    let beyond = request(
        w.addr(),
        b"GET /media/clip.webm HTTP/1.1\r\nRange: bytes=5000-\r\n\r\n",
    )
    .await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */1000"));
    let head = request(w.addr(), b"HEAD /media/clip.webm HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("1000"))
    );
    let list = request(w.addr(), b"GET /media/ HTTP/1.1\r\n\r\n").await;
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["files"], serde_json::json!(["clip.en.vtt", "clip.webm"]));
}

#[tokio::test]
async fn one_connection_carries_several_requests() {
    let (w, _dir, clip) = server().await;
    let mut s = TcpStream::connect(w.addr()).await.unwrap();
    // Two at once (pipelined), then a third after the answers.
    s.write_all(
        b"GET /media/clip.webm HTTP/1.1\r\nRange: bytes=0-3\r\n\r\n\
          GET /media/clip.webm HTTP/1.1\r\nRange: bytes=4-7\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.body,
        &clip[0..4]
    );
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.body,
        &clip[4..8]
    );
    s.write_all(b"GET /app.css HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed after Connection: close")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn requests_it_must_not_serve_get_their_status() {
    let (w, _dir, _) = server().await;
    for (raw, want) in [
        (&b"GET /media/../Cargo.toml HTTP/1.1\r\n\r\n"[..], 403),
        (b"GET /media/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n", 403),
        (b"GET /media/.secret HTTP/1.1\r\n\r\n", 403),
        (b"GET /media/none.webm HTTP/1.1\r\n\r\n", 404),
        (b"GET /media/%zz HTTP/1.1\r\n\r\n", 400),
        (
            b"POST /media/clip.webm HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
        (b"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 413),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"garbage\r\n\r\n", 400),
        (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
    ] {
        let r = request(w.addr(), raw).await;
        assert_eq!(
            r.status,
            want,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.body.is_empty(), "an error says why");
    }
    // A head that never ends is cut off at 16 KiB.
    let mut s = TcpStream::connect(w.addr()).await.unwrap();
    let mut huge = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20 * 1024));
    let _ = s.write_all(&huge).await;
    let r = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!(r.status, 431);
    // And the server still serves.
    let ok = request(w.addr(), b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_media_folder_that_is_not_one_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    for path in [file.path().to_path_buf(), "/nonexistent/continuity".into()] {
        let cfg = WebConfig {
            media: Some(path.clone()),
            mqtt_ws: None,
        };
        let e = match WebServer::start("127.0.0.1:0".parse().unwrap(), cfg).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} taken as a media folder", path.display()),
        };
        assert!(e.starts_with("--media "), "{e}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let e = match WebServer::start(at, WebConfig::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a port in use was taken"),
    };
    assert!(e.contains("in use") && e.contains("--web"), "{e}");
}
