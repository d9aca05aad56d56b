//! The rule vectors (`../shared/spec/VECTORS.md`) and one runner for every runtime of the policy:
//! a [`Runtime`] answers the JSON entry points; [`run_dir`] drives every vector of a directory
//! through it and prints one line per vector and `N passed, N failed`.

pub mod code_flow;
pub mod driver;
pub mod format;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One runtime of the policy, seen through its JSON entry points.
pub trait Runtime {
    /// Its name in reports (`native`, `wasmtime`).
    fn name(&self) -> &str;
    /// Calls `entry` with JSON `input`; answers the JSON envelope (`{"ok": …}` or `{"error": …}`).
    fn call(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>>;
    /// Several calls that share one instance, as one request's steps do (`token_start`, then
    /// `token_resume`). Natively the module's state is the thread's, so plain calls share it.
    fn session(&self) -> Result<Box<dyn Session + '_>> {
        Ok(Box::new(Calls(self)))
    }
    /// The host's KDF step (`NeedKdf`); native PBKDF2 unless the runtime has its own.
    fn kdf(&self, params: &serde_json::Value, password: &str) -> Result<Vec<u8>> {
        driver::native_kdf(params, password)
    }
}

/// Calls that share one instance of the module.
pub trait Session {
    /// Calls `entry` with JSON `input` on this session's instance.
    fn call(&mut self, entry: &str, input: &[u8]) -> Result<Vec<u8>>;
}

/// A runtime's plain calls, as a session.
struct Calls<'a, R: Runtime + ?Sized>(&'a R);

impl<R: Runtime + ?Sized> Session for Calls<'_, R> {
    fn call(&mut self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        self.0.call(entry, input)
    }
}

/// The policy linked natively, through the same JSON entry points as the wasm faces.
pub struct Native;

impl Runtime for Native {
    fn name(&self) -> &str {
        "native"
    }
    fn call(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        Ok(granted_policy::api::call(entry, input))
    }
}

/// Every `*.json` file of `dir`, sorted by name.
pub fn vector_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("could not read the vector directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    if files.is_empty() {
        anyhow::bail!("the vector directory {} holds no vectors", dir.display());
    }
    // Numbered files in number order (`9-…` before `10-…`), then by name.
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), name)
    });
    Ok(files)
}

/// Reads and parses one vector file.
pub fn load(path: &Path) -> Result<format::Vector> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a vector", path.display()))
}

/// What a directory run counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Vectors whose every expectation held.
    pub passed: usize,
    /// Vectors that failed, could not be read, or could not run.
    pub failed: usize,
}

/// Runs every vector of `dir` through `rt`, writing one line per vector and the summary line.
pub fn run_dir(
    rt: &dyn Runtime,
    dir: &Path,
    settings: &driver::Settings,
    out: &mut dyn Write,
) -> Result<Summary> {
    let mut summary = Summary::default();
    let files = vector_files(dir)?;
    for path in &files {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = load(path).and_then(|v| driver::run_vector(rt, &v, settings).map(|o| (v, o)));
        match result {
            Ok((_, outcome)) if outcome.mismatches.is_empty() => {
                summary.passed += 1;
                writeln!(out, "ok    {file}")?;
            }
            Ok((_, outcome)) => {
                summary.failed += 1;
                writeln!(out, "FAIL  {file}: {}", outcome.mismatches.join("; "))?;
            }
            Err(err) => {
                summary.failed += 1;
                writeln!(out, "FAIL  {file}: {err:#}")?;
            }
        }
    }
    if files.is_empty() {
        writeln!(out, "no vector files in {}", dir.display())?;
        summary.failed += 1;
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// The project's vectors and the spec's examples (`spec/vectors`, the repository's copy of the
/// shared spec: when it is missing, reading it fails the run instead of shrinking it).
pub fn default_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        root.join("vectors"),
        root.join("../spec/vectors"),
        root.join("vectors-code"),
        root.join("../spec/vectors-code"),
    ]
}
