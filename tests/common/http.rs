//! A minimal HTTP/1.1 file server on 127.0.0.1 for the download tests, serving copies of the
//! real files.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A minimal HTTP/1.1 file server: GET with optional `Range: bytes=N-`, 404 for unknown paths, and
/// optionally a first response that stops after `cut` bytes (a dropped connection).
/// Requests served: (path, the `Range` start when one was asked for).
type RequestLog = Arc<Mutex<Vec<(String, Option<u64>)>>>;

/// Reads one request's head: its path and the start of its `Range: bytes=N-` header, if any.
pub fn read_request(stream: &std::net::TcpStream) -> Option<(String, Option<u64>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    Some((path, range))
}

pub struct Server {
    port: u16,
    log: RequestLog,
}

impl Server {
    pub fn start(files: HashMap<String, Vec<u8>>, cut: Option<(String, usize)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (files, cut, log2) = (Arc::new(files), Arc::new(Mutex::new(cut)), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (files, cut, log) = (files.clone(), cut.clone(), log2.clone());
                std::thread::spawn(move || {
                    let Some((path, range)) = read_request(&stream) else { return };
                    log.lock().unwrap().push((path.clone(), range));
                    let Some(body) = files.get(&path) else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    };
                    let start = range.unwrap_or(0) as usize;
                    let rest = &body[start.min(body.len())..];
                    let head = match range {
                        Some(_) => format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
                            rest.len(), start, body.len() - 1, body.len()
                        ),
                        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len()),
                    };
                    let _ = stream.write_all(head.as_bytes());
                    let mut cut = cut.lock().unwrap();
                    let send = match cut.as_ref() {
                        Some((p, n)) if *p == path && range.is_none() => {
                            let n = *n;
                            *cut = None;
                            &rest[..n]
                        }
                        _ => rest,
                    };
                    let _ = stream.write_all(send);
                });
            }
        });
        Server { port, log }
    }
    pub fn base(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/{prefix}/", self.port)
    }
    pub fn requests(&self) -> Vec<(String, Option<u64>)> {
        self.log.lock().unwrap().clone()
    }
}

pub fn mnist_files(prefix: &str) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(super::mnist())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (format!("/{prefix}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap()))
        .collect()
}
