//! Refuses to build without the policy module: `cargo xtask wasm` makes it.

fn main() {
    // The directory cargo runs this script for, read when it runs: a build cache shared by two
    // checkouts may hand this compiled script to another checkout than the one it was built in.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    let wasm = std::path::Path::new(&manifest_dir).join("../www/pkg/granted_policy_bg.wasm");
    println!("cargo:rerun-if-changed={}", wasm.display());
    if !wasm.is_file() {
        eprintln!(
            "error: the policy module {} is missing: run `cargo xtask wasm` (or `cargo xtask test`) first",
            wasm.display()
        );
        std::process::exit(1);
    }
}
