//! `cargo bench -p granted --bench signing` (and `cargo xtask bench`): one access token's
//! signature by each algorithm the server offers, and the choice of crate for ES256: `ring`
//! (already here through rustls) against RustCrypto's `p256`, in one run on the same input.
//! Prints a Markdown table; `--quick` runs a short smoke pass.

use granted_host::signing::{generate, ServerKey};
use granted_policy::token::jwt::SigningAlg;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A signing input of the size the server signs (header and claims of a password grant).
const INPUT: &[u8] = b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjIwMjYtMTEtMjUtYWJjZGVmZ2gifQ.eyJpc3MiOiJodHRwczovL2dyYW50ZWQudGVzdC90ZW5hbnRzL2FjbWUiLCJzdWIiOiJhbGljZSIsImF1ZCI6Imh0dHBzOi8vZ3JhbnRlZC50ZXN0IiwiY2xpZW50X2lkIjoiY3JtLTEiLCJzY29wZSI6InJlYWQgd3JpdGUiLCJpYXQiOjE3OTQ0OTI4MDAsImV4cCI6MTc5NDQ5NjQwMCwianRpIjoiQUFBQUFBQUFBQUFBQUFBQUFBQUFBQSIsInRlbmFudCI6ImFjbWUifQ";

/// The median of `rounds` means of `per_round` calls of `f`.
fn median_micros(rounds: usize, per_round: usize, mut f: impl FnMut()) -> f64 {
    let mut means: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed() / per_round as u32
        })
        .collect();
    means.sort();
    means[means.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, per_round) = if quick { (3, 50) } else { (21, 2_000) };
    let mut rows = Vec::new();
    for alg in [
        SigningAlg::HS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
        SigningAlg::RS256,
    ] {
        let secret = generate(alg).expect("a key");
        let key = ServerKey::open("bench", alg, &secret).expect("a usable key");
        let sig = key.sign(INPUT).expect("a signature");
        assert!(key.verify(INPUT, &sig));
        let per = if alg == SigningAlg::RS256 {
            per_round / 10
        } else {
            per_round
        };
        let sign = median_micros(rounds, per, || {
            black_box(key.sign(black_box(INPUT)).expect("sign"));
        });
        let verify = median_micros(rounds, per, || {
            black_box(key.verify(black_box(INPUT), black_box(&sig)));
        });
        rows.push((format!("{} (ring)", alg.name()), sign, verify));
    }
    // The same ES256 signature with RustCrypto's p256, the alternative to ring.
    {
        use p256::ecdsa::signature::{Signer, Verifier};
        use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let verifying = VerifyingKey::from(&key);
        let sig: Signature = key.sign(INPUT);
        let sign = median_micros(rounds, per_round / 4, || {
            let s: Signature = key.sign(black_box(INPUT));
            black_box(s);
        });
        let verify = median_micros(rounds, per_round / 4, || {
            black_box(verifying.verify(black_box(INPUT), &sig).is_ok());
        });
        rows.push(("ES256 (p256 0.13)".to_string(), sign, verify));
    }
    println!("| signature | sign µs | verify µs |\n| --- | ---: | ---: |");
    for (name, sign, verify) in rows {
        println!("| {name} | {sign:.1} | {verify:.1} |");
    }
}
