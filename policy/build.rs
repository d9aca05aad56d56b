//! Linker settings for the wasm build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        // Start with 2 MiB of linear memory: 1 MiB of stack and data, and the rest a heap that the
        // allocator takes without `memory.grow`. A request then never grows memory, so a fresh
        // instance costs no `mprotect` on the way in or out (see ARCHITECTURE.md).
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=2097152");
    }
}
