//! A 500-image `nextscale sample` run with the bundled model keeps a flat resident set: the
//! largest RSS over the last 100 images is at most 5 % above the largest over images
//! 50–150 (after the allocator and the thread pool have settled). RSS comes from
//! `/proc/<pid>/status` every 20 ms; the images written so far place each reading.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Resident set of a running process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn five_hundred_images_keep_a_flat_rss() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/public/models/emoji32.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("images");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextscale"))
        .args([
            "sample", "--class", "none", "--count", "500", "--batch", "10",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // (images written, RSS) while it runs.
    let mut readings = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let written = std::fs::read_dir(&out).map_or(0, |d| d.count());
        if let Some(rss) = rss_kib(child.id()) {
            readings.push((written, rss));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 500);
    let peak = |from: usize, to: usize| {
        readings
            .iter()
            .filter(|(n, _)| (from..to).contains(n))
            .map(|&(_, rss)| rss)
            .max()
            .unwrap_or_else(|| panic!("no reading between images {from} and {to}"))
    };
    let (early, late) = (peak(50, 150), peak(400, 500));
    println!(
        "RSS peak: images 50–150 {early} KiB, 400–500 {late} KiB, {} readings",
        readings.len()
    );
    assert!(
        late as f64 <= early as f64 * 1.05,
        "RSS grew from {early} KiB to {late} KiB"
    );
}
