//! Raw socket round trips to kited: `get_token` on one persistent connection, the same with
//! client and daemon pinned to one CPU, and connect + request + close.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::machine::{affinity, set_affinity};
use crate::procfs::own_tid;
use crate::progress;
use crate::report::Samples;
use crate::setup::Bench;

/// One `get_token` request line.
pub const GET_TOKEN: &[u8] = b"{\"op\":\"get_token\"}\n";

/// One NDJSON request/answer on an open connection; the answer line (newline included) is left
/// in `buf`.
pub fn round_trip(
    stream: &mut UnixStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    stream.write_all(request)?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.last() == Some(&b'\n') {
            return Ok(());
        }
    }
}

pub fn connect(socket: &Path) -> Result<UnixStream, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// The round-trip times.
pub struct Latency {
    pub persistent: Samples,
    /// `None` when `taskset` could not pin the threads.
    pub same_cpu: Option<Samples>,
    pub per_connection: Samples,
}

/// `requests` round trips on one connection (then the same pinned), and `connects` round trips
/// on a fresh connection each.
pub fn latency(bench: &Bench, requests: usize, connects: usize) -> Result<Latency, String> {
    let request = GET_TOKEN;
    progress(&format!(
        "raw socket: {requests} get_token requests on one connection"
    ));
    let mut stream = connect(&bench.socket)?;
    let mut buf = Vec::with_capacity(512);
    for _ in 0..1000 {
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
    }
    let check: Value = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
    if check["access_token"] != json!(bench.token) {
        return Err(format!("unexpected get_token answer: {check}"));
    }
    let mut persistent = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
        persistent.push(start.elapsed());
    }
    let persistent = Samples::new(persistent);

    // The same with this thread and kited's (single) runtime thread on one CPU: the difference
    // is the cost of waking the other, idle CPU for every request.
    progress("raw socket: the same with client and kited pinned to one CPU (taskset)");
    let pid = bench.pid;
    let same_cpu = match (own_tid(), affinity(pid)) {
        (Some(tid), Some(all)) => {
            let cpu = all.split([',', '-']).next().unwrap_or("0").to_string();
            if set_affinity(tid, &cpu) && set_affinity(pid, &cpu) {
                let mut times = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let start = Instant::now();
                    round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
                    times.push(start.elapsed());
                }
                set_affinity(pid, &all);
                set_affinity(tid, &all);
                Some(Samples::new(times))
            } else {
                None
            }
        }
        _ => None,
    };
    drop(stream);

    progress(&format!(
        "raw socket: {connects} connect + get_token + close"
    ));
    let mut per_connection = Vec::with_capacity(connects);
    for _ in 0..connects {
        let start = Instant::now();
        let mut stream = connect(&bench.socket)?;
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
        drop(stream);
        per_connection.push(start.elapsed());
    }
    Ok(Latency {
        persistent,
        same_cpu,
        per_connection: Samples::new(per_connection),
    })
}
