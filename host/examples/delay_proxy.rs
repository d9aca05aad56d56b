//! A TCP proxy that delays every byte by a fixed time in each direction: a database "on another
//! machine" for the scale-out bench (bench/README.md, "PostgreSQL and the delay proxy").
//!
//!     cargo run --release -p granted --example delay_proxy -- 127.0.0.1:6543 127.0.0.1:5432 500
//!
//! listens on the first address, connects each client to the second, and holds what either side
//! sends for the given microseconds before passing it on (500: a round trip of about 1 ms, as to a
//! database in the same data centre). What is in flight keeps flowing: the delay is latency, not
//! a limit on throughput. Ends when its standard input closes (so that a bench that spawned it
//! stops it by ending it), or on SIGTERM.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay_us] = args.as_slice() else {
        eprintln!("usage: delay_proxy LISTEN_ADDR TARGET_ADDR DELAY_MICROSECONDS");
        std::process::exit(2);
    };
    let delay = Duration::from_micros(delay_us.parse().unwrap_or_else(|_| {
        eprintln!("the delay must be a number of microseconds");
        std::process::exit(2);
    }));
    let listener = TcpListener::bind(listen)?;
    // The bench reads this line to know the proxy listens.
    println!("{}", listener.local_addr()?);
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let target = target.clone();
        std::thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&target) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client_w), Ok(server_w)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            std::thread::spawn(move || pipe(client, server_w, delay));
            pipe(server, client_w, delay);
        });
    }
    Ok(())
}

/// Reads `from` and writes each chunk to `to` once `delay` has passed since it was read.
fn pipe(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || deliver(to, due));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default().to_vec();
                if chunks.send((Instant::now() + delay, chunk)).is_err() {
                    break;
                }
            }
        }
    }
    drop(chunks);
    let _ = writer.join();
}

/// Writes each chunk when it is due, in order; closes the write side once the reader is done.
fn deliver(mut to: TcpStream, due: mpsc::Receiver<(Instant, Vec<u8>)>) {
    fine_sleeps();
    for (at, chunk) in due {
        let wait = at.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        if to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Sleeps end within a few microseconds of when asked (Linux lets a thread's sleep run 50 µs
/// late by default: a tenth of the delay).
fn fine_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer and changes only this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }
}
