//! The one build driver: `cargo xtask wasm | test [api|browser] | demo | bench policy | fuzz`.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

mod layers;
mod spec;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  wasm           build the policy module for wasm32 and write www/pkg/ (prints its SHA-256)
  test           install what is missing, build the module, check fmt and clippy, run every
                 test on every runtime
  test api       only schemathesis against the admin API's OpenAPI document
  test browser   only the admin page in headless Chromium
  layers         check that no file of policy/src or host/src imports one that imports it back
  demo           build the module and the host, and preview a sample app edit
  bench          Granted beside an axum ceiling, a peer (oauth2-server) and the login limit,
                 in one run (wrk); then bench policy and bench preview
  bench policy   the policy's decision path and PBKDF2: native against wasm, in one run
  bench preview  the admin page's preview of 10,000 tenants in headless Chromium
  bench edge     the edge handler on Node against granted serve: cold start, answers/s
  fuzz [SECS]    run the cargo-fuzz targets (not part of `test`)";

/// The name of the wasm-bindgen output; the host and the JavaScript side load `{NAME}_bg.wasm`.
const MODULE_NAME: &str = "granted_policy";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["wasm"] => wasm().map(|_| ()),
        ["test"] => test(),
        ["test", "api"] => schemathesis(),
        ["test", "browser"] => browser_tests(),
        ["layers"] => layers::check(&root()),
        ["demo"] => demo(),
        ["bench"] => bench_all(),
        ["bench", "policy"] => bench_policy(),
        ["bench", "edge"] => bench_edge(),
        ["bench", "preview"] => bench_preview(),
        ["fuzz"] => fuzz(60),
        ["fuzz", secs] => fuzz(secs.parse().context("fuzz takes a number of seconds")?),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown command `{}`", args.join(" "));
        }
    }
}

/// The workspace root: from `CARGO_MANIFEST_DIR` as `cargo run` sets it for this run, so that
/// a binary from a build cache another checkout shares never points at that other checkout.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// `cargo run --quiet --package granted --features testing -- ARGS`: the `granted` binary with
/// its test machinery (`vectors`, `--fixed-now`), built as needed: the same build `cargo test`
/// makes, so neither rebuilds it for the other.
fn granted(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "granted",
        "--features",
        "testing",
        "--",
    ])
    .args(args);
    cmd
}

/// Builds `target/debug/granted` with its test machinery (see [`granted`]).
fn build_test_granted() -> Result<PathBuf> {
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "--package",
        "granted",
        "--features",
        "testing",
    ]))?;
    Ok(target_dir().join("debug/granted"))
}

fn step(title: &str) {
    println!("\n==> {title}");
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("could not run `rustup target list --installed`")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    step("installing the wasm32-unknown-unknown target");
    run_cmd(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// Builds the policy for wasm32, runs wasm-bindgen, writes `www/pkg/`; returns the `_bg.wasm` path.
fn wasm() -> Result<PathBuf> {
    ensure_wasm_target()?;
    step("building the policy module (wasm32-unknown-unknown, release)");
    // Paths of this machine stay out of the module, so that any checkout builds the same bytes.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let flags = [
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/granted", root().display()),
        // `-reference-types`: our code and wasm-bindgen's runtime keep JavaScript values in the
        // glue's own array rather than in an `externref` table (see `without_target_features`).
        // `+simd128`: the JSON reader and writer scan strings sixteen bytes per vector compare
        // (wasm SIMD runs in wasmtime, Node, browsers and the edge runtimes alike).
        "-Ctarget-feature=-reference-types,+simd128".to_string(),
        // Twice LLVM's default inlining threshold: fewer calls in the module, and each call a
        // wasm runtime makes costs it an interruption check (wasmtime's epoch deadline: the
        // checks were 14% of a password flow). Measured with `module_ab`, both orders: 3.5–4%
        // less per password flow, for a module 34% larger (18% gzipped). See ARCHITECTURE.md.
        "-Cllvm-args=-inline-threshold=500".to_string(),
    ]
    .join("\u{1f}");
    run_cmd(cargo().env("CARGO_ENCODED_RUSTFLAGS", flags).args([
        "build",
        "--quiet",
        "--package",
        "granted-policy",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--release",
    ]))?;
    let input = target_dir()
        .join("wasm32-unknown-unknown/release")
        .join(format!("{MODULE_NAME}.wasm"));
    let out_dir = root().join("www/pkg");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let raw =
        std::fs::read(&input).with_context(|| format!("could not read {}", input.display()))?;
    let raw = without_target_features(&raw)
        .with_context(|| format!("{} is not a wasm module", input.display()))?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_bytes(MODULE_NAME, raw)
        .out_name(MODULE_NAME)
        .web(true)?
        .typescript(true)
        .remove_producers_section(true)
        .generate(&out_dir)
        .with_context(|| format!("wasm-bindgen on {}", input.display()))?;
    let bg = out_dir.join(format!("{MODULE_NAME}_bg.wasm"));
    let bytes = std::fs::read(&bg).with_context(|| format!("could not read {}", bg.display()))?;
    let digest = hex(&Sha256::digest(&bytes));
    std::fs::write(
        out_dir.join(format!("{MODULE_NAME}_bg.wasm.sha256")),
        format!("{digest}\n"),
    )
    .context("could not write the digest file")?;
    println!("policy module: {} ({} bytes)", bg.display(), bytes.len());
    println!("sha256: {digest}");
    Ok(bg)
}

/// `module` without its `target_features` custom section.
///
/// Why: std for wasm32 is prebuilt with `reference-types`, so that section says
/// `+reference-types` even though our crates are built without it; wasm-bindgen reads the section
/// and would then move JavaScript values into an `externref` table of 1028 entries. That table
/// spans two host pages, and wasmtime resets a table of more than one page after every instance
/// with a `PAGEMAP_SCAN` system call (about 1.5 µs per request, measured with `perf`); without it
/// the only table is the function table, reset by a `memset`. Without the section wasm-bindgen
/// decides from the module's exports, which have no `externref` intrinsics.
fn without_target_features(module: &[u8]) -> Result<Vec<u8>> {
    fn leb(bytes: &[u8], at: &mut usize) -> Result<usize> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = *bytes.get(*at).context("a section ends early")?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("a LEB128 number is too long")
    }
    if module.get(..8) != Some(b"\0asm\x01\0\0\0") {
        bail!("no wasm header");
    }
    let mut out = module[..8].to_vec();
    let mut at = 8;
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at)?;
        let body_start = at;
        let end = body_start.checked_add(size).filter(|&e| e <= module.len());
        let end = end.context("a section runs past the end")?;
        let drop = id == 0 && {
            let mut name_at = body_start;
            let len = leb(module, &mut name_at)?;
            module.get(name_at..name_at + len) == Some(b"target_features")
        };
        if !drop {
            out.extend_from_slice(&module[start..end]);
        }
        at = end;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spec's example vectors in the repository (`spec/vectors`, `spec/vectors-code`), after
/// checking that the copy equals `../shared/spec` when that is beside the checkout: a run
/// without them fails, it does not shrink.
fn spec_vectors() -> Result<[PathBuf; 2]> {
    spec::check(&root())?;
    let dirs = [
        root().join("spec/vectors"),
        root().join("spec/vectors-code"),
    ];
    for dir in &dirs {
        if !dir.is_dir() {
            bail!(
                "the spec's vectors are missing: {} is not a directory",
                dir.display()
            );
        }
    }
    Ok(dirs)
}

/// The house rules: formatting, and clippy with every lint as an error (the policy crate adds
/// its own deny lints: no `unwrap`, `expect`, `panic` or indexing).
fn house_rules() -> Result<()> {
    ensure_components()?;
    step("cargo fmt --all --check");
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// rustfmt and clippy, through rustup when missing.
fn ensure_components() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .context("could not run `rustup component list --installed`")?;
    let installed = String::from_utf8_lossy(&out.stdout).into_owned();
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            step(&format!("installing the {component} component"));
            run_cmd(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn test() -> Result<()> {
    let started = std::time::Instant::now();
    let spec = spec_vectors()?;
    layers::check(&root())?;
    wasm()?;
    house_rules()?;
    ensure_postgres()?;
    step("the JOSE libraries that check access tokens (PyJWT from PyPI, jose from npm)");
    let jose_python = jose_tools()?;
    step("cargo test: policy (with proptest), native vectors, wasmtime vectors, host (SQLite and PostgreSQL), JOSE libraries on our tokens");
    run_cmd(
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("GRANTED_JOSE_PYTHON", &jose_python)
            .env("GRANTED_JOSE_REQUIRED", "1"),
    )?;
    step("cargo test: the server, admin API and import/export tests again, on PostgreSQL");
    run_cmd(
        cargo()
            .args([
                "test",
                "--package",
                "granted",
                "--test",
                "server",
                "--test",
                "admin",
                "--test",
                "import",
                "--no-fail-fast",
            ])
            .env("GRANTED_TEST_STORE", "postgres"),
    )?;

    step("granted vectors: every vector through the _bg.wasm under wasmtime");
    let [spec, spec_code] = spec;
    let dirs = vec![
        root().join("tests/vectors"),
        spec,
        root().join("tests/vectors-code"),
        spec_code,
    ];
    for dir in &dirs {
        run_cmd(granted(&["vectors"]).arg(dir))?;
    }
    step("granted vectors --http: every vector over real HTTP (token endpoint, admin API)");
    run_cmd(granted(&["vectors", "--http"]).args(&dirs))?;
    step("granted vectors --http --postgres: the same, each vector on a PostgreSQL database");
    run_cmd(granted(&["vectors", "--http", "--postgres"]).args(&dirs))?;

    step("schemathesis: the admin API against its OpenAPI document, on a running granted serve");
    schemathesis()?;

    step("granted vectors --http --edge: every token vector over HTTP against the edge handler on Node");
    check_node()?;
    run_cmd(
        granted(&["vectors", "--http", "--edge"])
            .arg(root().join("www/edge/serve.mjs"))
            .args(&dirs),
    )?;

    step("the edge against the host: the same 500 generated requests, the same answers; the sequence vectors through the edge handler");
    build_test_granted()?;
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .args(["--test", "--test-reporter=spec", "tests/edge/"])
            .env("GRANTED_BIN", target_dir().join("debug/granted")),
    )?;

    step("panva/jose on the access tokens of the edge and of the host sharing keys, per algorithm");
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .args(["--test", "--test-reporter=spec", "tests/jose/"])
            .env("GRANTED_BIN", target_dir().join("debug/granted")),
    )?;

    step("node --test: every vector through the _bg.wasm under Node (wasm-bindgen API)");
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .args(["--test", "--test-reporter=spec", "tests/node/"])
            .env(
                "VECTORS_DIR",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
    )?;
    step("the admin page in headless Chromium (playwright-core), against granted serve");
    browser_tests()?;
    println!("\nall tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The venv with schemathesis at the versions of `tests/api/requirements.txt`.
fn schemathesis_venv() -> Result<PathBuf> {
    python_venv("tests/api/requirements.txt", "schemathesis-venv")
}

/// The JOSE libraries that check access tokens in `host/tests/jose.rs`: PyJWT in a venv from
/// `tests/jose/requirements.txt`, panva/jose from `tests/jose/package-lock.json`. Answers the
/// venv's python.
fn jose_tools() -> Result<PathBuf> {
    check_node()?;
    npm_packages("tests/jose")?;
    Ok(python_venv("tests/jose/requirements.txt", "jose-venv")?.join("bin/python"))
}

/// A venv under `target/tools/NAME` with the packages of `requirements` (from the root), at
/// their pinned versions; made or brought up to date when that file changed. Installs Debian's
/// `python3-venv` when `venv` is missing.
fn python_venv(requirements: &str, name: &str) -> Result<PathBuf> {
    let what = requirements;
    let requirements = root().join(requirements);
    let wanted = std::fs::read(&requirements).context(what.to_string())?;
    let venv = target_dir().join("tools").join(name);
    let marker = venv.join("granted-requirements.txt");
    if std::fs::read(&marker).ok().as_deref() == Some(&wanted[..]) {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = |venv: &Path| {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !made(&venv) {
        println!("python3 -m venv failed: installing Debian's python3-venv");
        let _ = std::fs::remove_dir_all(&venv);
        run_cmd(Command::new("apt-get").arg("update").arg("-qq")).context(
            "python3 with venv is needed for the Python test tools (Debian: apt-get install python3-venv)",
        )?;
        run_cmd(Command::new("apt-get").args([
            "install",
            "-y",
            "-qq",
            "python3-venv",
            "python3-pip",
        ]))?;
        if !made(&venv) {
            bail!("python3 -m venv still fails after installing python3-venv");
        }
    }
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )
    .with_context(|| format!("installing {what} from PyPI"))?;
    std::fs::write(&marker, &wanted)?;
    Ok(venv)
}

/// Runs schemathesis against `granted serve` on the demo state: no 5xx, every response in the
/// schema, every status and content type documented.
fn schemathesis() -> Result<()> {
    let venv = schemathesis_venv()?;
    build_test_granted()?;
    let granted = target_dir().join("debug/granted");
    let dir = target_dir().join("schemathesis");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("granted.db");
    run_cmd(
        Command::new(&granted)
            .args(["import", "--kdf-iterations", "1000", "--db"])
            .arg(&db)
            .arg(root().join("tests/demo/state.json")),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let token = "schemathesis-admin-token-0123456789abcdef";
    let mut server = Command::new(&granted)
        .args(["serve", "--kdf-iterations", "1000", "--db"])
        .arg(&db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("GRANTED_ADMIN_TOKEN", token)
        .env("GRANTED_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log"))?)
        .spawn()
        .context("starting granted serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = server.kill();
            bail!(
                "granted serve did not start (see {})",
                dir.join("serve.log").display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let outcome = run_cmd(
        Command::new(venv.join("bin/schemathesis"))
            .current_dir(&dir)
            .arg("run")
            .arg(format!("{base}/admin/api/v1/openapi.json"))
            .args(["--url", &format!("{base}/admin/api/v1")])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            // The provider check fetches the discovery document of the issuer its input names:
            // a fuzzer would aim it at hosts off this machine. host/tests/admin.rs tests it
            // against a stub provider on loopback.
            .args(["--exclude-path", "/tenants/{tenant}/identity-provider/check"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                "--max-examples",
                "50",
                "--seed",
                "1",
                "--no-color",
            ]),
    );
    let _ = server.kill();
    let _ = server.wait();
    outcome.context("schemathesis found a 5xx or a response outside the OpenAPI document")
}

/// Debian's `chromium`, installed when absent.
fn ensure_chromium() -> Result<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if path.exists() {
        return Ok(path);
    }
    println!(
        "{} is missing: installing Debian's chromium",
        path.display()
    );
    apt_install("chromium", "the browser tests")?;
    if !path.exists() {
        bail!(
            "apt-get installed chromium but {} is still missing",
            path.display()
        );
    }
    Ok(path)
}

/// The npm packages of `tests/browser/`.
fn ensure_browser_packages() -> Result<()> {
    npm_packages("tests/browser")
}

/// The npm packages of the folder `rel` (from the root), from its lockfile (`npm ci`) when they
/// are not there or the lockfile changed.
fn npm_packages(rel: &str) -> Result<()> {
    let dir = root().join(rel);
    let lock = std::fs::read(dir.join("package-lock.json"))
        .with_context(|| format!("{rel}/package-lock.json"))?;
    let marker = dir.join("node_modules/.granted-lock");
    if std::fs::read(&marker).ok().as_deref() == Some(&lock[..]) {
        return Ok(());
    }
    run_cmd(Command::new("npm").current_dir(&dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
    ]))
    .with_context(|| format!("npm ci in {rel}"))?;
    std::fs::write(&marker, &lock)?;
    Ok(())
}

/// The admin page in headless Chromium against `granted serve` with the demo state.
fn browser_tests() -> Result<()> {
    check_node()?;
    let chromium = ensure_chromium()?;
    ensure_browser_packages()?;
    build_test_granted()?;
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .args(["--test", "--test-reporter=spec", "tests/browser/"])
            .env("GRANTED_BIN", target_dir().join("debug/granted"))
            .env("CHROMIUM", &chromium)
            .env("ARTIFACTS_DIR", target_dir().join("browser-artifacts")),
    )
}

/// Debian's `wrk`, installed when absent.
fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    println!("wrk is missing: installing Debian's wrk");
    apt_install("wrk", "the load")
}

/// Debian's PostgreSQL server, installed when absent: the store's tests run against it too
/// (`granted_host::testing` starts a throwaway server of it), and Debian's `openssl`, which
/// makes the certificates of the TLS test.
fn ensure_postgres() -> Result<()> {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("openssl is missing: installing Debian's openssl");
        apt_install("openssl", "the PostgreSQL TLS test's certificates")?;
    }
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/initdb").exists());
    if installed || std::env::var_os("GRANTED_TEST_POSTGRES").is_some() {
        return Ok(());
    }
    println!("PostgreSQL's server is missing: installing Debian's postgresql");
    apt_install("postgresql", "the store's PostgreSQL tests")
}

/// Installs one Debian package; `why` says what needs it.
fn apt_install(package: &str, why: &str) -> Result<()> {
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))
        .with_context(|| format!("{package} is needed for {why} (apt-get install {package})"))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("{package} is needed for {why} (apt-get install {package})"))
}

/// Builds the release bench `name` of the granted package and answers its executable (cargo
/// prints it on `--no-run`'s standard error).
fn bench_binary(name: &str) -> Result<PathBuf> {
    let out = cargo()
        .args(["bench", "--package", "granted", "--bench", name, "--no-run"])
        .output()
        .with_context(|| format!("building bench {name}"))?;
    if !out.status.success() {
        bail!(
            "building bench {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Executable ")
                .and_then(|rest| rest.rsplit_once('(')?.1.strip_suffix(')'))
        })
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("cargo did not name bench {name}'s executable: {text}"))
}

/// `cargo xtask bench`: the side-by-side run (`bench/run.mjs`), then `bench policy`.
fn bench_all() -> Result<()> {
    wasm()?;
    check_node()?;
    ensure_wrk()?;
    step("building granted, the ceiling and the delay proxy (release)");
    run_cmd(cargo().args(["build", "--quiet", "--release", "--package", "granted"]))?;
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "granted",
        "--example",
        "ceiling",
        "--example",
        "delay_proxy",
    ]))?;
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "granted-policy",
        "--example",
        "kdf_time",
    ]))?;
    step("building the signing and commit benches (release)");
    let signing_bench = bench_binary("signing")?;
    let commit_bench = bench_binary("commit")?;
    step("building granted with its test machinery (a throwaway PostgreSQL server for the bench)");
    let testing = build_test_granted()?;
    step("the peer's npm packages (bench/peer/package-lock.json)");
    run_cmd(
        Command::new("npm")
            .current_dir(root().join("bench/peer"))
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"]),
    )?;
    step("benchmark: Granted beside the ceiling, the peer and the login limit");
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .arg("bench/run.mjs")
            .arg("--granted")
            .arg(target_dir().join("release/granted"))
            .arg("--ceiling")
            .arg(target_dir().join("release/examples/ceiling"))
            .arg("--delay-proxy")
            .arg(target_dir().join("release/examples/delay_proxy"))
            .arg("--kdf-time")
            .arg(target_dir().join("release/examples/kdf_time"))
            .arg("--testing-granted")
            .arg(testing)
            .arg("--signing-bench")
            .arg(signing_bench)
            .arg("--commit-bench")
            .arg(commit_bench),
    )?;
    bench_policy()?;
    bench_preview()
}

/// The admin page's preview of an app installed by 10,000 tenants, in headless Chromium.
fn bench_preview() -> Result<()> {
    wasm()?;
    check_node()?;
    let chromium = ensure_chromium()?;
    ensure_browser_packages()?;
    step("benchmark: the admin page's preview in Chromium (10,000 tenants)");
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .arg("bench/preview.mjs")
            .arg("--chromium")
            .arg(chromium),
    )
}

fn bench_edge() -> Result<()> {
    wasm()?;
    check_node()?;
    ensure_wrk()?;
    step("building granted (release)");
    run_cmd(cargo().args(["build", "--quiet", "--release", "--package", "granted"]))?;
    step("benchmark: the edge handler on Node against granted serve, in one run");
    run_cmd(
        Command::new("node")
            .current_dir(root())
            .arg("bench/edge.mjs")
            .arg("--granted")
            .arg(target_dir().join("release/granted")),
    )
}

fn check_node() -> Result<()> {
    let out = Command::new("node").arg("--version").output().context(
        "node is not installed: install Node.js 20 or later (Debian: apt-get install nodejs)",
    )?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!("node {version} is too old: Node.js 20 or later is needed");
    }
    Ok(())
}

fn demo() -> Result<()> {
    wasm()?;
    step("building granted");
    run_cmd(cargo().args(["build", "--quiet", "--release", "--package", "granted"]))?;
    let granted = target_dir().join("release/granted");
    let state = root().join("tests/demo/state.json");
    let edit = root().join("tests/demo/edit.json");
    step("granted preview: a sample edit (crm moves to a new client_id with client_credentials)");
    println!(
        "$ granted preview --state {} --edit {}",
        rel(&state),
        rel(&edit)
    );
    run_cmd(
        Command::new(&granted)
            .arg("preview")
            .arg("--state")
            .arg(&state)
            .arg("--edit")
            .arg(&edit),
    )?;
    let revert = root().join("tests/demo/revert.json");
    println!(
        "\n$ granted preview --state {} --edit {}",
        rel(&state),
        rel(&revert)
    );
    // A rejected edit exits 3 by design; the demo shows it without failing.
    let _ = Command::new(&granted)
        .arg("preview")
        .arg("--state")
        .arg(&state)
        .arg("--edit")
        .arg(&revert)
        .status();

    // The server, on a fresh database with the demo state.
    let dir = target_dir().join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let db = dir.join("granted.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let listen = std::env::var("GRANTED_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    step("granted import: the demo state (hashing its passwords with PBKDF2, 600,000 iterations)");
    run_cmd(
        Command::new(&granted)
            .arg("import")
            .arg("--db")
            .arg(&db)
            .arg(&state),
    )?;
    step("granted serve");
    println!(
        "The demo state holds every sunset case: `crm` is a legacy password app that acme and globex
keep; `reports` moved to a new client_id and to client_credentials (globex updated and lost the
password grant, acme has not and keeps it); `sync` was created after the sunset; initech requires SSO.

  the admin page: http://{listen}/admin/  (sign in with the admin token the server prints below)
  health:   curl -s http://{listen}/healthz

  a token (acme keeps the password grant for crm):
    curl -s -u crm-1:crm-1-secret -d grant_type=password -d username=alice \\
      -d 'password=correct horse battery' http://{listen}/tenants/acme/connect/token

  refused by the sunset, with the reason (globex updated reports to client_credentials):
    curl -s -u reports-2:reports-2-secret -d grant_type=password -d username=bob \\
      -d 'password=tr0ub4dor&3' http://{listen}/tenants/globex/connect/token

  the way forward for an app that acts for a user: `notes` moved to the authorization code flow
  with PKCE (globex updated; acme keeps the password grant until it does). Open this in a browser,
  sign in as carol (password `an old passw0rd`, expired: the page has her choose a new one), allow
  the app, and the browser lands on 127.0.0.1:8765/callback?code=... (nothing listens there: copy
  the code from the address bar):
    http://{listen}/tenants/globex/connect/authorize?response_type=code&client_id=notes-1&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&scope=openid%20read&state=demo&nonce=n-0S6_WzA2Mj&code_challenge=Y2IM6g9SLQ-OhKT1FhGYxE34ixHLxOoSgTcx2quopB8&code_challenge_method=S256
  then, within 60 s, exchange it (the verifier goes with the challenge above):
    curl -s -u notes-1:notes-1-secret -d grant_type=authorization_code -d code=CODE \
      -d redirect_uri=http://127.0.0.1:8765/callback \
      -d code_verifier=granted-demo-code-verifier-0123456789-abcdefghij \
      http://{listen}/tenants/globex/connect/token

  the admin API (the server prints its admin token once, below, as `admin token: ...`):
    curl -s -H \"Authorization: Bearer $TOKEN\" http://{listen}/admin/api/v1/apps

Ctrl-C stops the server.\n"
    );
    run_cmd(
        Command::new(&granted)
            .arg("serve")
            .arg("--db")
            .arg(&db)
            .arg("--listen")
            .arg(&listen),
    )
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn bench_policy() -> Result<()> {
    wasm()?;
    step("benchmark: the decision path and PBKDF2, native against wasm under wasmtime");
    run_cmd(cargo().args(["bench", "--package", "granted", "--bench", "policy"]))
}

fn fuzz(seconds: u64) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        step("installing cargo-fuzz");
        run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root().join("fuzz");
    step("seeding the corpus from the vectors");
    run_cmd(
        cargo()
            .args([
                "run",
                "--quiet",
                "--package",
                "granted-vectors",
                "--bin",
                "seed-corpus",
                "--",
            ])
            .arg(fuzz_dir.join("corpus")),
    )?;
    for target in ["token_request", "entry_points", "admin_input"] {
        step(&format!("fuzzing `{target}` for {seconds}s"));
        run_cmd(
            Command::new("cargo")
                .current_dir(&fuzz_dir)
                // cargo-fuzz passes nightly-only flags; this toolchain is stable.
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", "--sanitizer", "none", target])
                .arg(fuzz_dir.join("corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}")),
        )?;
    }
    Ok(())
}
