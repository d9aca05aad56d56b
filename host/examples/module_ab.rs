//! A/B of two policy modules on one token flow, in one process: the way a change to the policy
//! is judged before `cargo xtask bench policy` (bench/README.md, "A/B of two modules").
//!
//!     cargo xtask wasm && cp www/pkg/granted_policy_bg.wasm /tmp/a.wasm   # before the change
//!     cargo xtask wasm && cp www/pkg/granted_policy_bg.wasm /tmp/b.wasm   # after it
//!     cargo run --release -p granted --example module_ab -- /tmp/a.wasm /tmp/b.wasm
//!
//! Optional third and fourth arguments: the vector whose token flow is replayed (a file name in
//! `tests/vectors/`; the password grant's by default) and the flows per round (2,000). Each module
//! is first driven through the vector (which must pass on it), its calls recorded, and then timed
//! on its own calls, each flow on a fresh instance as the server runs them. The two modules take turns, one round each,
//! for 40 rounds, so that the machine's slower phases fall on both alike; the statistic is the
//! median of the rounds' means per flow, and the line ends with B's median over A's.

use granted_host::guest::{Guest, GuestOptions};
use granted_vectors::driver::{run_vector, Settings};
use granted_vectors::{load, Runtime, Session};
use std::cell::RefCell;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

/// Drives a vector through one module, recording the token-endpoint calls of its flow (entry
/// point and input), to replay them: each module is timed on its own steps, so that a change to
/// the steps themselves is measured too.
struct Recorder<'g> {
    guest: &'g Guest,
    calls: RefCell<Vec<(String, Vec<u8>)>>,
}

struct Recording<'r, 'g> {
    session: granted_host::guest::Session,
    recorder: &'r Recorder<'g>,
}

impl Session for Recording<'_, '_> {
    fn call(&mut self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        if entry.starts_with("token") {
            self.recorder
                .calls
                .borrow_mut()
                .push((entry.to_string(), input.to_vec()));
        }
        Ok(self.session.call(entry, input)?)
    }
}

impl Runtime for Recorder<'_> {
    fn name(&self) -> &str {
        "recorder"
    }
    fn call(&self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.guest.call(entry, input)?)
    }
    fn session(&self) -> anyhow::Result<Box<dyn Session + '_>> {
        Ok(Box::new(Recording {
            session: self.guest.session()?,
            recorder: self,
        }))
    }
}

const ROUNDS: usize = 40;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: module_ab A.wasm B.wasm [vector file] [flows per round]");
    };
    let vector = rest.first().map_or(
        "01-legacy-password-app-installed-before-the-sunset-keeps-the-pa.json",
        String::as_str,
    );
    let per_round: usize = match rest.get(1) {
        Some(n) => n.parse()?,
        None => 2_000,
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(vector);
    let vector = load(&path)?;
    let settings = Settings {
        flow: true,
        ..Settings::default()
    };
    let modules = [a, b].map(|file| Guest::load_file(Path::new(file), GuestOptions::default()));
    let [a, b] = modules;
    let (a, b) = (a?, b?);
    let steps_of = |guest: &Guest| -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let recorder = Recorder {
            guest,
            calls: RefCell::new(Vec::new()),
        };
        let outcome = run_vector(&recorder, &vector, &settings)?;
        anyhow::ensure!(
            outcome.mismatches.is_empty(),
            "the vector does not pass on a module: {:?}",
            outcome.mismatches
        );
        Ok(recorder.calls.into_inner())
    };
    let steps = [steps_of(&a)?, steps_of(&b)?];
    let mut means = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for ((guest, steps), means) in [&a, &b].into_iter().zip(&steps).zip(means.iter_mut()) {
            let started = Instant::now();
            for _ in 0..per_round {
                let mut session = guest.session()?;
                for (entry, input) in steps {
                    black_box(session.call(entry, black_box(input))?);
                }
            }
            means.push(started.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        }
    }
    let [a_means, b_means] = means.map(|mut m| {
        m.sort_by(f64::total_cmp);
        m
    });
    let median = |m: &[f64]| m[m.len() / 2];
    println!(
        "{ROUNDS} rounds of {per_round} flows each, a fresh instance per flow: A ({} calls) median \
         {:.2} µs (fastest round {:.2}), B ({} calls) median {:.2} µs (fastest round {:.2}), B/A {:.3}",
        steps[0].len(),
        median(&a_means),
        a_means[0],
        steps[1].len(),
        median(&b_means),
        b_means[0],
        median(&b_means) / median(&a_means),
    );
    Ok(())
}
