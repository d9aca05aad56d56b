//! One native PBKDF2-HMAC-SHA256 derivation timed as the server's KDF threads run it: for `cargo
//! xtask bench`, the physical limit of logins per second. Prints the median, in milliseconds.
//!
//!     kdf_time [--iterations N] [--runs N]

use granted_policy::credentials::kdf::{derive, KdfAlgorithm};
use std::process::ExitCode;

fn main() -> ExitCode {
    let (mut iterations, mut runs) = (600_000u32, 5u32);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u32>().ok());
        match (flag.as_str(), value) {
            ("--iterations", Some(n)) => iterations = n,
            ("--runs", Some(n)) => runs = n.max(1),
            _ => {
                eprintln!("kdf_time: usage: kdf_time [--iterations N] [--runs N]");
                return ExitCode::from(2);
            }
        }
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|i| {
            let started = std::time::Instant::now();
            let derived = derive(
                KdfAlgorithm::Pbkdf2Sha256,
                format!("password {i}").as_bytes(),
                b"granted-bench-salt",
                iterations,
                32,
            );
            std::hint::black_box(derived);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!("{median:.2}");
    ExitCode::SUCCESS
}
