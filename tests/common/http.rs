//! HTTP over a bare socket, as a monitoring system scrapes
//! `--metrics-addr` (brook's, and brook-bridge's): a request sent as it
//! is, the response read to the end, and the page's samples.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::WAIT;

/// An HTTP response: its status line, headers (names in lower case) and
/// body.
pub struct Response {
    pub status: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Sends `request` as it is, and reads the response to the end (the server
/// closes the connection after it).
pub fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).expect("send the request");
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("the response, then the end of the stream");
    let text = String::from_utf8(bytes).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET /metrics`, which must succeed; returns the page.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nHost: brook\r\n\r\n");
    assert_eq!(response.status, "HTTP/1.1 200 OK", "{}", response.body);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        response.headers.get("connection").map(String::as_str),
        Some("close")
    );
    assert_eq!(
        response.headers.get("content-length"),
        Some(&response.body.len().to_string())
    );
    response.body
}

/// The values of the page's samples, by their line up to the value:
/// `name{labels}`.
pub fn samples(page: &str) -> HashMap<String, String> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.to_owned()))
        .collect()
}
