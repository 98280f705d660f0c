//! What the CLI tests share: running the built binary.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `nextscale` binary; fails the test if it panicked.
pub fn nextscale(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nextscale"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "the CLI panicked: {stderr}");
    out
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
