//! `nextscale parity`: compare a fixture directory's reference outputs with the core.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;
use nextscale::parity::run_var_cases;
use nextscale::weights::WeightFile;

use super::load;

/// Prints the error of every case and exits non-zero on any mismatch.
pub fn run(dir: &Path) -> Result<ExitCode> {
    let weights = load::read(&dir.join("weights.safetensors"))?;
    if WeightFile::parse(&weights)?
        .names()
        .iter()
        .any(|n| n.starts_with("dd."))
    {
        println!(
            "{}: unsupported: Distilled-Decoding fixtures (`dd.` tensors) are not implemented yet",
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    let device = Device::flex();
    let model = load::model(dir, &device)?;
    let cases = load::read(&dir.join("cases.safetensors"))?;
    let results = pollster::block_on(run_var_cases(&model, &WeightFile::parse(&cases)?))?;
    let mut failed = 0;
    for r in &results {
        let verdict = if r.passed() { "ok" } else { "MISMATCH" };
        if r.exact {
            println!("{:<34} {:>10} differing tokens  {verdict}", r.name, r.error);
        } else {
            println!(
                "{:<34} max abs err {:.3e} (tol {:.0e})  {verdict}",
                r.name, r.error, r.tolerance
            );
        }
        failed += usize::from(!r.passed());
    }
    println!(
        "{} cases, {} passed, {} failed",
        results.len(),
        results.len() - failed,
        failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
