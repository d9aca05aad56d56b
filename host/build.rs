//! Refuses to build without the policy module: `cargo xtask wasm` makes it.

fn main() {
    let wasm =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/pkg/granted_policy_bg.wasm");
    println!("cargo:rerun-if-changed={}", wasm.display());
    if !wasm.is_file() {
        eprintln!(
            "error: the policy module {} is missing: run `cargo xtask wasm` (or `cargo xtask test`) first",
            wasm.display()
        );
        std::process::exit(1);
    }
}
