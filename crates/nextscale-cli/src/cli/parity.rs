//! `nextscale parity`: compare a fixture directory's reference outputs (VAR, Distilled
//! Decoding, zero-shot editing or HMAR) with the core.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::tensor::Device;
use nextscale::parity::{
    EditTask, load_dd_fixture, run_dd_cases, run_edit_cases, run_hmar_cases, run_var_cases,
};
use nextscale::weights::WeightFile;

use super::load;

/// Prints the error of every case and exits non-zero on any mismatch.
pub fn run(dir: &Path) -> Result<ExitCode> {
    let weights = load::read(&dir.join("weights.safetensors"))?;
    let file = WeightFile::parse(&weights)?;
    let device = Device::flex();
    let cases = load::read(&dir.join("cases.safetensors"))?;
    let cases = WeightFile::parse(&cases)?;
    let json = std::fs::read_to_string(dir.join("config.json"))
        .with_context(|| format!("reading {}/config.json", dir.display()))?;
    let results = if file.names().iter().any(|n| n.starts_with("dd.")) {
        let pair = load_dd_fixture(&json, &file, &device)?;
        pollster::block_on(run_dd_cases(&pair, &cases))?
    } else if file.names().iter().any(|n| n.starts_with("hmar.")) {
        let model = load::model(dir, &device)?;
        pollster::block_on(run_hmar_cases(&model, &cases, &json))?
    } else if cases.contains("edit.input_image") {
        let model = load::model(dir, &device)?;
        let tasks = EditTask::from_fixture_json(&json)?;
        pollster::block_on(run_edit_cases(&model, &cases, &tasks))?
    } else {
        let model = load::model(dir, &device)?;
        pollster::block_on(run_var_cases(&model, &cases))?
    };
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
