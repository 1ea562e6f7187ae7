//! `mesh-bench-server --port P [--port P2 ...] [--threads N]`: the bench's backend. For every
//! connection it reads the request head, writes one fixed small `200` and closes, so each request
//! is a new TCP connection. busybox httpd forks per request and would cap every scenario alike;
//! this serves from a few threads per port. The runner starts it inside the backend task's
//! network namespace (`nsenter -t <pid> -n`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// What every request gets.
const RESPONSE: &[u8] =
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

#[derive(Parser)]
#[command(about = "Answers every HTTP request with a fixed 200 and closes the connection")]
struct Args {
    /// A TCP port to listen on (all addresses); repeat for more.
    #[arg(long = "port", required = true)]
    ports: Vec<u16>,
    /// Accepting threads per port.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut handles = Vec::new();
    for port in &args.ports {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, *port))
            .with_context(|| format!("listening on port {port}"))?;
        for _ in 0..args.threads.max(1) {
            let l = listener.try_clone()?;
            handles.push(std::thread::spawn(move || serve(&l)));
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn serve(listener: &TcpListener) {
    loop {
        if let Ok((stream, _)) = listener.accept() {
            // A client that misbehaves costs this connection only.
            let _ = answer(stream);
        }
    }
}

/// Reads until the end of the request head (or 8 KiB), answers, closes.
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if head_complete(&buf[..len]) {
            break;
        }
    }
    stream.write_all(RESPONSE)
}

fn head_complete(data: &[u8]) -> bool {
    data.windows(4).any(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_and_closed() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let l = listener.try_clone().unwrap();
        std::thread::spawn(move || serve(&l));
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s.write_all(b"Connection: close\r\n\r\n").unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            assert_eq!(out, RESPONSE);
        }
    }

    #[test]
    fn the_head_ends_at_a_blank_line() {
        assert!(head_complete(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!head_complete(b"GET / HTTP/1.0\r\nHost: x\r\n"));
    }
}
