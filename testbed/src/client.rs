//! A plain HTTP/1.0 client for the lab's checks: no dependency, short timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GETs `path` from `addr` (in the calling thread's namespace): the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_within(addr, path, Duration::from_secs(2), Duration::from_secs(3))
}

/// [`http_get`] with its connect and read timeouts given (benches probe with short ones).
pub fn http_get_within(
    addr: SocketAddr,
    path: &str,
    connect: Duration,
    read: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, connect).ok()?;
    s.set_read_timeout(Some(read)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: lab\r\n\r\n").ok()?;
    let mut text = String::new();
    s.take(1 << 20).read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// POSTs `body` (JSON) to `path` at `addr`: the status code and body.
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.take(1 << 20).read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Percentiles of `samples` as the benches print them.
pub fn percentiles(mut samples: Vec<Duration>) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// One line from `s`, read a byte at a time so nothing after it is consumed; `None` at the end
/// of the stream or past 512 bytes without a newline.
pub fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 512 {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        if byte[0] == b'\n' {
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
    None
}
