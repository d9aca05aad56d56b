//! `cargo xtask bench policy`: the token endpoint's decision path (everything but the KDF) and
//! PBKDF2, native against the `_bg.wasm` under wasmtime with a fresh instance per request, in
//! one run on the same inputs. Prints a Markdown table and writes it to `bench/results/policy.md`.

use granted_host::guest::Guest;
use granted_vectors::driver::{run_vector, Settings};
use granted_vectors::{load, Native, Runtime};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Records the token-endpoint calls a vector makes (entry point and input), to replay them.
struct Recorder {
    calls: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Runtime for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn call(&self, entry: &str, input: &[u8]) -> anyhow::Result<Vec<u8>> {
        if entry.starts_with("token") {
            self.calls
                .borrow_mut()
                .push((entry.to_string(), input.to_vec()));
        }
        Native.call(entry, input)
    }
}

fn token_steps(vector: &str, flow: bool) -> Vec<(String, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/");
    let vector = load(std::path::Path::new(&format!("{root}{vector}"))).expect("vector");
    let recorder = Recorder {
        calls: RefCell::new(Vec::new()),
    };
    let settings = Settings {
        flow,
        ..Settings::default()
    };
    let outcome = run_vector(&recorder, &vector, &settings).expect("vector runs");
    assert!(outcome.mismatches.is_empty(), "{:?}", outcome.mismatches);
    recorder.calls.into_inner()
}

/// Passes over the main rows, each `PASS_ITERATIONS` requests of native and of wasm, `PAUSE`
/// apart.
const PASSES: usize = 9;
const PASS_ITERATIONS: usize = 3_000;
const PAUSE: Duration = Duration::from_secs(20);

/// Requests of one side in a row, before the other side's turn.
const ROUND: usize = 250;

/// The median, over every round of [`ROUND`] requests in `passes`, of the round's mean.
fn median_round_mean<'a>(passes: impl Iterator<Item = &'a Vec<Duration>>) -> Duration {
    let mut means: Vec<Duration> = passes
        .flat_map(|samples| samples.chunks(ROUND))
        .map(|round| round.iter().sum::<Duration>() / round.len() as u32)
        .collect();
    means.sort();
    means.get(means.len() / 2).copied().unwrap_or_default()
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations / 10 {
        f();
    }
    let samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    stats(samples)
}

/// `a` and `b` measured in turns, `round` runs of each at a time, so that whatever else the
/// machine is doing (a shared virtual machine's neighbours) falls on both alike.
fn measure_interleaved(
    iterations: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Vec<Duration>, Vec<Duration>) {
    let round = ROUND;
    for _ in 0..iterations / 10 {
        a();
        b();
    }
    let (mut sa, mut sb) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    for _ in 0..iterations.div_ceil(round) {
        for (f, samples) in [(&mut a as &mut dyn FnMut(), &mut sa), (&mut b, &mut sb)] {
            for _ in 0..round {
                let t = Instant::now();
                f();
                samples.push(t.elapsed());
            }
        }
    }
    (sa, sb)
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    Stats {
        mean: total / n as u32,
        p50: samples[n / 2],
        p99: samples[n * 99 / 100],
    }
}

/// A main row: native and wasm figures and both ratios; `mark` (`**` or nothing) around the
/// label and the wasm figures.
fn full_row(
    table: &mut String,
    label: &str,
    native: &Stats,
    wasm: &Stats,
    unit: fn(Duration) -> String,
    mark: &str,
) {
    let _ = writeln!(
        table,
        "| {mark}{label}{mark} | {} | {} / {} | {mark}{}{mark} | {mark}{}{mark} / {} | {mark}{:.2}×{mark} | {mark}{:.2}×{mark} |",
        unit(native.mean),
        unit(native.p50),
        unit(native.p99),
        unit(wasm.mean),
        unit(wasm.p50),
        unit(wasm.p99),
        wasm.mean.as_secs_f64() / native.mean.as_secs_f64(),
        wasm.p50.as_secs_f64() / native.p50.as_secs_f64()
    );
}

/// A secondary row: a wasm variant's figures and its ratios to native.
fn wasm_row(table: &mut String, label: &str, wasm: &Stats, native: &Stats) {
    let _ = writeln!(
        table,
        "| {label} | | | {} | {} / {} | {:.2}× | {:.2}× |",
        us(wasm.mean),
        us(wasm.p50),
        us(wasm.p99),
        wasm.mean.as_secs_f64() / native.mean.as_secs_f64(),
        wasm.p50.as_secs_f64() / native.p50.as_secs_f64()
    );
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let guest = Guest::embedded().expect("the embedded module loads");
    // The "one instance reused" rows run in a pool of their own. An instance that serves thousands
    // of requests leaves many pages resident in its slot, and the kernel reports every resident
    // page of a slot as written, so each later instance in that slot would reset them all:
    // measured, it doubled the instantiation rows that followed.
    let reuse_guest = Guest::embedded().expect("the embedded module loads");
    // Flows measured again at the end with wasmtime's default slot reset.
    let mut madvise_cases = Vec::new();
    let mut table = String::new();
    let _ = writeln!(table, "policy module sha256: `{}`\n", guest.sha256());
    let _ = writeln!(
        table,
        "| path | native mean | native p50 / p99 | wasm mean | wasm p50 / p99 | wasm ÷ native (means) | wasm ÷ native (p50s) |"
    );
    let _ = writeln!(table, "| --- | --- | --- | --- | --- | --- | --- |");

    let cases = [
        (
            "password grant, decision path (3 steps, KDF excluded)",
            "01-legacy-password-app-installed-before-the-sunset-keeps-the-pa.json",
        ),
        (
            "client_credentials, decision path (2 steps)",
            "08-tenant-that-updated-to-the-new-client-id-uses-client-credent.json",
        ),
        (
            "malformed request (1 step)",
            "16-t1-a-get-to-the-token-endpoint-is-malformed.json",
        ),
    ];
    // Every row's steps, recorded once.
    let mut rows = Vec::new();
    for (label, file) in cases {
        // As the server does: one `token_start`, then `token_resume` with what each step adds;
        // then the stateless `token` calls, each carrying the whole input.
        for flow in [true, false] {
            let label = if flow {
                format!("{label}, one flow")
            } else {
                format!("{label}, stateless `token` calls")
            };
            rows.push((label, token_steps(file, flow), flow));
        }
    }
    // Native and one fresh instance per request (its steps on that instance), in turns, in
    // PASSES passes over all the rows: a neighbour's burst on this shared machine lasts seconds
    // to minutes, so the passes fall at different moments. The main table takes every sample of
    // every pass; the second table takes, per row, the pass whose native median was lowest (the
    // quietest moment for both, as they ran in turns).
    let mut passes: Vec<Vec<(Vec<Duration>, Vec<Duration>)>> = vec![Vec::new(); rows.len()];
    for pass in 0..PASSES {
        for (k, (_, steps, _)) in rows.iter().enumerate() {
            passes[k].push(measure_interleaved(
                PASS_ITERATIONS,
                || {
                    for (entry, input) in steps {
                        black_box(granted_policy::api::call(entry, black_box(input)));
                    }
                },
                || {
                    let mut session = guest.session().expect("instance");
                    for (entry, input) in steps {
                        black_box(session.call(entry, black_box(input)).expect("call"));
                    }
                },
            ));
        }
        if pass + 1 < PASSES {
            std::thread::sleep(PAUSE);
        }
    }
    let mut quiet = String::new();
    let mut rounds = String::new();
    let mut goal = String::new();
    let mut malformed = None;
    let rows_for_pages = rows.clone();
    for ((label, steps, flow), runs) in rows.into_iter().zip(passes) {
        let native = stats(runs.iter().flat_map(|r| r.0.iter().copied()).collect());
        let wasm = stats(runs.iter().flat_map(|r| r.1.iter().copied()).collect());
        // The mean per request of each round of ROUND requests, and the median of those: a mean
        // that a burst on the machine moves only if it lasts through half of the rounds.
        let native_rounds = median_round_mean(runs.iter().map(|r| &r.0));
        let wasm_rounds = median_round_mean(runs.iter().map(|r| &r.1));
        let _ = writeln!(
            rounds,
            "| {label} | {} | **{}** | **{:.2}×** |",
            us(native_rounds),
            us(wasm_rounds),
            wasm_rounds.as_secs_f64() / native_rounds.as_secs_f64()
        );
        if flow && label.starts_with("malformed") {
            malformed = Some((label.clone(), native.p50, wasm.p50));
        }
        // Per pass, native and wasm figures; the quietest pass is the one whose native median
        // was lowest.
        let per_pass: Vec<(Stats, Stats)> = runs
            .into_iter()
            .map(|(n, w)| (stats(n), stats(w)))
            .collect();
        let slowest_native = per_pass.iter().map(|(n, _)| n.p50).max();
        let quietest = per_pass.iter().min_by_key(|(n, _)| n.p50);
        if let Some((n, w)) = quietest {
            let _ = writeln!(
                quiet,
                "| {label} | {} | **{}** | {} | **{:.2}×** |",
                us(n.p50),
                us(w.p50),
                us(w.mean),
                w.p50.as_secs_f64() / n.p50.as_secs_f64()
            );
        }
        if let (true, false, Some((qn, qw)), Some(slowest)) = (
            flow,
            label.starts_with("malformed"),
            quietest,
            slowest_native,
        ) {
            // The goal: the wasm decision path, instantiation included, at most 25 µs per
            // request and at most 3× native. It is judged on one statistic, declared here: the
            // median of the rounds' means (a burst on the machine moves it only if it lasts
            // through half of the rounds). The others are shown, not judged.
            let limit = Duration::from_micros(25);
            let ratio =
                |wasm: Duration, native: Duration| wasm.as_secs_f64() / native.as_secs_f64();
            let verdict = ratio(wasm_rounds, native_rounds);
            let met = if wasm_rounds <= limit && verdict <= 3.0 {
                "met"
            } else {
                "not met"
            };
            let line = |what: &str, wasm: Duration, native: Duration| {
                format!("- {what}: {} and {:.2}×\n", us(wasm), ratio(wasm, native))
            };
            let _ = writeln!(
                goal,
                "Goal (at most 25 µs per request and at most 3× native, fresh instance), {label}, \
                 judged on the median of the {ROUND}-request rounds' means: {} and {verdict:.2}×: \
                 **{met}**.\n\nThe other statistics of the same samples, for information:\n\n{}{}{}{}\n\
                 The machine's own speed in this run: the native median of this row was {} in its \
                 quietest pass and {} in its slowest.\n",
                us(wasm_rounds),
                line("p50 of every sample", wasm.p50, native.p50),
                line("mean of every sample", wasm.mean, native.mean),
                line("p50 in the quietest pass", qw.p50, qn.p50),
                line("mean in the quietest pass", qw.mean, qn.mean),
                us(qn.p50),
                us(slowest),
            );
        }
        // The guest's own work: one instance kept across requests.
        let mut kept = reuse_guest.session().expect("instance");
        let reused = measure(5_000, || {
            for (entry, input) in &steps {
                black_box(kept.call(entry, black_box(input)).expect("call"));
            }
        });
        drop(kept);
        full_row(&mut table, &label, &native, &wasm, us, "**");
        wasm_row(
            &mut table,
            &format!("{label}, one instance reused (no instantiation: the guest's work alone)"),
            &reused,
            &native,
        );
        if flow {
            madvise_cases.push((label, steps, native));
        }
    }
    let instantiate = measure(5_000, || {
        black_box(guest.session().expect("instance"));
    });
    let info = measure(5_000, || {
        let mut session = guest.session().expect("instance");
        black_box(session.call("info", b"{}").expect("call"));
    });
    let _ = writeln!(
        table,
        "| instance + one `info` call | | | {} | {} / {} | | |",
        us(info.mean),
        us(info.p50),
        us(info.p99)
    );
    let _ = writeln!(
        table,
        "| instantiation alone (fresh `Store` + `InstancePre::instantiate`) | | | {} | {} / {} | | |",
        us(instantiate.mean),
        us(instantiate.p50),
        us(instantiate.p99)
    );

    // The pages of linear memory one flow writes: the host resets each when the instance goes.
    let mut pages = String::new();
    for (label, steps, flow) in &rows_for_pages {
        if !flow {
            continue;
        }
        let before = guest.session().expect("instance").memory_snapshot();
        let mut session = guest.session().expect("instance");
        for (entry, input) in steps {
            session.call(entry, input).expect("call");
        }
        let after = session.memory_snapshot();
        let written = before
            .chunks(4096)
            .zip(after.chunks(4096))
            .filter(|(a, b)| a != b)
            .count();
        let _ = writeln!(pages, "| {label} | {written} of {} |", before.len() / 4096);
    }

    // The same module with wasmtime's default slot reset (madvise: every request faults its pages
    // in), in a pool of its own, made only now so that nothing it does falls on the rows above.
    let cold = Guest::load(
        granted_host::guest::EMBEDDED_POLICY,
        granted_host::guest::GuestOptions {
            keep_resident: 0,
            ..Default::default()
        },
    )
    .expect("the embedded module loads");
    for (label, steps, native) in madvise_cases {
        let madvise = measure(5_000, || {
            let mut session = cold.session().expect("instance");
            for (entry, input) in &steps {
                black_box(session.call(entry, black_box(input)).expect("call"));
            }
        });
        wasm_row(
            &mut table,
            &format!("{label}, slots reset by madvise instead of kept resident"),
            &madvise,
            &native,
        );
    }
    drop(cold);

    let iterations = 600_000u32;
    let salt = b"0123456789abcdef";
    let input = serde_json::to_vec(&serde_json::json!({
        "algorithm": "pbkdf2-sha256", "password": "correct horse battery", "salt": base64_encode(salt),
        "iterations": iterations, "length": 32
    }))
    .unwrap();
    let native = measure(5, || {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"correct horse battery", salt, iterations, &mut out);
        black_box(out);
    });
    let slow = Guest::load(
        granted_host::guest::EMBEDDED_POLICY,
        granted_host::guest::GuestOptions {
            deadline: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .expect("guest");
    let wasm = measure(5, || {
        black_box(slow.call("pbkdf2", &input).expect("pbkdf2"));
    });
    full_row(
        &mut table,
        &format!("PBKDF2-HMAC-SHA256, {iterations} iterations"),
        &native,
        &wasm,
        ms,
        "",
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    #[cfg(target_arch = "x86_64")]
    let sha_ni = std::is_x86_feature_detected!("sha");
    #[cfg(not(target_arch = "x86_64"))]
    let sha_ni = false;
    let _ = writeln!(
        table,
        "\nmachine: {cpu}, {} cores, SHA-NI: {sha_ni}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let _ = writeln!(
        table,
        "\n### Mean per request, median over rounds\n\nEvery pass runs native and wasm in turns, {ROUND} requests at a time. Per row: the median, over all rounds of all passes, of each round's mean per request.\n\n\
         | path | native | wasm | wasm ÷ native |\n| --- | --- | --- | --- |\n{rounds}"
    );
    let _ = writeln!(
        table,
        "\n| one flow on a fresh instance | 4 KiB pages of linear memory it changed (the host resets each when the instance is dropped) |\n| --- | --- |\n{pages}"
    );
    let _ = writeln!(
        table,
        "\n### The quietest of {PASSES} passes\n\nPer row, the pass ({PASS_ITERATIONS} requests each of native and wasm, in turns) with the lowest native median; \
         the main table above has every sample of every pass.\n\n\
         | path | native p50 | wasm p50 | wasm mean | wasm ÷ native (p50s) |\n| --- | --- | --- | --- | --- |\n{quiet}"
    );
    if let Some((label, native, wasm)) = malformed {
        let _ = writeln!(
            goal,
            "A request refused while it is parsed ({label}) takes {} in wasm against {} natively \
             ({:.2}×): under the 25 µs, but over 3×, because making and dropping the instance alone \
             takes {} (p50 above), {:.2}× that native time, before the module does anything.\n",
            us(wasm),
            us(native),
            wasm.as_secs_f64() / native.as_secs_f64(),
            us(instantiate.p50),
            instantiate.p50.as_secs_f64() / native.as_secs_f64(),
        );
    }
    let _ = writeln!(table, "\n### The decision path's goal\n\n{goal}");
    println!("{table}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(
            format!("{dir}/policy.md"),
            format!("# cargo xtask bench policy\n\n{table}"),
        );
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
