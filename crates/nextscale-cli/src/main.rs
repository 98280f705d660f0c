//! `nextscale`: sample images, inspect and convert model files, check parity with the
//! official implementation and benchmark, natively on the flex CPU backend or wgpu.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

/// mimalloc, set never to purge (see `main`).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h: the option enum keeps retired options as
/// placeholders, so the numbers stay put.
#[cfg(not(target_arch = "wasm32"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    // flex allocates a fresh buffer for nearly every tensor op. glibc's malloc, and mimalloc
    // with its default 10 ms purge delay, hand those pages back to the kernel and fault in
    // zeroed ones for the next op; `bench --random d16` spent about a quarter of its time
    // there (12.6–13.5 s against 9.4–10.2 s with purging off, for 0.17 GB more peak memory).
    // SAFETY: sets a plain integer option, before any thread of ours starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
