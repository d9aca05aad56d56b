//! Linker settings for the wasm build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        // 128 KiB of stack (a token request uses 8 KiB; serde_json's recursion limit of 128
        // levels stays well inside it), then about 50 KiB of data, then the heap. The module
        // starts with 512 KiB of linear memory, so the allocator's heap (about 330 KiB) serves a
        // whole token request without `memory.grow`: a fresh instance costs no `mprotect` on the
        // way in or out. Less memory also means less for the host to scan for dirty pages when
        // it resets the instance slot (see ARCHITECTURE.md).
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=131072");
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=524288");
    }
}
