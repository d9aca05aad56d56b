//! `granted`: the token server's command line (`cli/`).
#![deny(clippy::too_many_lines)]

mod cli;

/// mimalloc instead of glibc's malloc: under load the server's threads (tokio's workers, the
/// group commit, the KDF pool) allocate and free across threads, and glibc's malloc, free and
/// consolidation were about 12% of the server's CPU per request (`perf`, client_credentials).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
