//! `nextscale`: sample images, inspect and convert model files, check parity with the
//! official implementation and benchmark, natively on the flex CPU backend or wgpu.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
