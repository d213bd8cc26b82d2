//! `wsrelay-swarm recv-bench`: the CPU cost of the swarm's receive path alone (frame decoding
//! with UTF-8 validation, the delivery scanner, gap checks, histogram recording), on bytes
//! already in memory. Together with a run's "swarm CPU-s per M deliveries" (which adds the
//! read syscalls and the poll), it says how many deliveries one swarm core can take.
//!
//! Owns: a synthetic read buffer. May not touch: the network beyond one idle loopback pair
//! (a `Conn` needs a socket, which this never reads).

use std::net::{TcpListener, TcpStream as StdStream};

use wsrelay::proto::frame::{encode_server_frame, OpCode};

use crate::conn::{Conn, ConnKind, RecvCtx};
use crate::plan::Routes;
use crate::stats::{ThreadStats, Window};

/// Bytes per simulated read (the driver's read buffer).
const READ_BYTES: usize = 64 << 10;

/// Result of a receive benchmark.
#[derive(Debug, Clone, Copy)]
pub struct RecvBench {
    /// Deliveries processed.
    pub deliveries: u64,
    /// CPU-seconds of the benchmark thread (not wall time: a shared machine's other work
    /// does not count against the swarm).
    pub elapsed_s: f64,
    /// Bytes of one delivery frame.
    pub frame_bytes: usize,
}

impl RecvBench {
    /// Deliveries per second on one core.
    pub fn per_s(&self) -> f64 {
        self.deliveries as f64 / self.elapsed_s
    }
}

/// One wsrelay-format delivery of `content_bytes` content from publisher 0, message `index`.
fn delivery_frame(out: &mut Vec<u8>, index: u32, content_bytes: usize) {
    let padding = content_bytes.saturating_sub(crate::payload::JSON_CONTENT_BYTES_MIN);
    let sent_at = 1_000_000_000u64 + u64::from(index);
    let content = format!(
        "{{\"t\":{sent_at:<20},\"p\":0{:9},\"i\":{index:<10},\"x\":\"{}\"}}",
        "",
        "x".repeat(padding)
    );
    let text = format!(
        "{{\"type\":\"message\",\"channel\":\"ch.0\",\"content\":{content},\"from\":\"0-1-2\",\"seq\":{}}}",
        u64::from(index) + 1
    );
    encode_server_frame(out, true, OpCode::Text, text.as_bytes());
}

/// Feeds `deliveries` deliveries of `content_bytes` through one connection's receive path.
pub fn run(deliveries: u64, content_bytes: usize) -> std::io::Result<RecvBench> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = StdStream::connect(listener.local_addr()?)?;
    let _server_side = listener.accept()?;
    let mut conn = Conn::new(
        mio::net::TcpStream::from_std(client),
        None,
        ConnKind::Steady,
        0,
    );
    let routes = Routes {
        channel_of: vec![0],
        rank_of: vec![0],
        publishers_per_channel: vec![1],
        channel_names: vec!["ch.0".to_string()],
    };
    conn.subscribe_to(0, &routes);
    conn.session.phase = crate::conn::Phase::Ready;
    let mut frames = Vec::with_capacity(READ_BYTES);
    let mut frame_bytes = 0;
    let mut per_read = 0u64;
    while frames.len() + frame_bytes < READ_BYTES {
        delivery_frame(&mut frames, per_read as u32, content_bytes);
        frame_bytes = frames.len() / (per_read as usize + 1);
        per_read += 1;
    }
    let mut stats = ThreadStats::default();
    let mut inflate = crate::conn::InflateScratch::default();
    let mut scratch = frames.clone();
    let window = Window {
        start_ns: 0,
        end_ns: u64::MAX,
    };
    let reads = deliveries.div_ceil(per_read);
    let started_cpu_s = crate::sys::thread_cpu_s();
    for _ in 0..reads {
        scratch.copy_from_slice(&frames);
        let mut ctx = RecvCtx {
            stats: &mut stats,
            now_ns: 2_000_000_000,
            window,
            routes: &routes,
            inflate: &mut inflate,
        };
        if conn.on_bytes(&mut scratch, &mut ctx).is_err() {
            return Err(std::io::Error::other(
                "decoder rejected the synthetic frames",
            ));
        }
    }
    let elapsed_s = (crate::sys::thread_cpu_s() - started_cpu_s).max(1e-9);
    Ok(RecvBench {
        deliveries: stats.received_window,
        elapsed_s,
        frame_bytes,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_synthetic_delivery_is_recognised() {
        let bench = super::run(10_000, 100).unwrap();
        assert!(bench.deliveries >= 10_000);
        assert!(bench.frame_bytes > 100);
    }
}
