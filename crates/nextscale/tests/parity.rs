//! Parity with the official PyTorch implementations on every `var-*`, `dd-*`, `edit-*` and
//! `hmar-*` fixture directory under `../shared/fixtures` and every directory listed in
//! `NEXTSCALE_FIXTURES` (colon-separated); a directory with `dd.` tensors is a
//! Distilled-Decoding fixture, one with `hmar.` tensors an HMAR one, and one whose config
//! has an `edit` object a zero-shot edit one.
//! Tolerances: tokens exact, floats within `parity::FLOAT_TOL` (1e-4) on flex.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use nextscale::ModelConfig;

use nextscale::model::Model;
use nextscale::parity::{
    CaseResult, EditTask, load_dd_fixture, run_dd_cases, run_edit_cases, run_hmar_cases,
    run_var_cases,
};
use nextscale::weights::WeightFile;

/// Every `var-*` and `dd-*` directory under the fixtures, plus `NEXTSCALE_FIXTURES`.
fn fixture_dirs() -> Vec<PathBuf> {
    let root = common::fixtures();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("fixtures at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                ["var-", "dd-", "edit-", "hmar-"]
                    .iter()
                    .any(|prefix| n.starts_with(prefix))
            })
        })
        .collect();
    if let Ok(extra) = std::env::var("NEXTSCALE_FIXTURES") {
        dirs.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    dirs.sort();
    dirs
}

/// Prints every case's error and records the ones over tolerance.
fn report(dir: &Path, results: &[CaseResult], failures: &mut Vec<String>) {
    for r in results {
        println!(
            "{} {:<32} error {:.3e} (tol {:.0e})",
            dir.display(),
            r.name,
            r.error,
            r.tolerance
        );
        if !r.passed() {
            failures.push(format!(
                "{}: {} error {} > {}",
                dir.display(),
                r.name,
                r.error,
                r.tolerance
            ));
        }
    }
}

/// Whether the directory's weights hold tensors under `prefix`.
fn has_prefix(dir: &Path, prefix: &str) -> bool {
    let bytes = std::fs::read(dir.join("weights.safetensors")).unwrap();
    WeightFile::parse(&bytes)
        .unwrap()
        .names()
        .iter()
        .any(|n| n.starts_with(prefix))
}

fn is_dd(dir: &Path) -> bool {
    has_prefix(dir, "dd.")
}

fn is_hmar(dir: &Path) -> bool {
    has_prefix(dir, "hmar.")
}

fn is_edit(dir: &Path) -> bool {
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&json)
        .unwrap()
        .get("edit")
        .is_some()
}

#[test]
fn var_fixtures_match_official_outputs() {
    let dirs: Vec<PathBuf> = fixture_dirs()
        .into_iter()
        .filter(|d| !is_dd(d) && !is_edit(d) && !is_hmar(d))
        .collect();
    assert!(!dirs.is_empty(), "no var fixtures found");
    let device = Device::flex();
    let mut failures = Vec::new();
    for dir in &dirs {
        let config = ModelConfig::from_fixture_json(
            &std::fs::read_to_string(dir.join("config.json")).unwrap(),
        )
        .unwrap();
        let weights = std::fs::read(dir.join("weights.safetensors")).unwrap();
        let cases = std::fs::read(dir.join("cases.safetensors")).unwrap();
        let model =
            Model::from_weights(config, &WeightFile::parse(&weights).unwrap(), &device).unwrap();
        let results =
            pollster::block_on(run_var_cases(&model, &WeightFile::parse(&cases).unwrap())).unwrap();
        report(dir, &results, &mut failures);
        // Every kind of case must have run.
        for group in [
            "encode.idx.",
            "encode.recon_image.",
            "decode.image",
            "forward.logits",
            "greedy.cfg",
        ] {
            assert!(
                results.iter().any(|r| r.name.starts_with(group)),
                "{}: no {group} case ran",
                dir.display()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn hmar_fixtures_match_official_outputs() {
    let dirs: Vec<PathBuf> = fixture_dirs().into_iter().filter(|d| is_hmar(d)).collect();
    assert!(!dirs.is_empty(), "no hmar fixtures found");
    let device = Device::flex();
    let mut failures = Vec::new();
    for dir in &dirs {
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config = ModelConfig::from_fixture_json(&json).unwrap();
        let weights = std::fs::read(dir.join("weights.safetensors")).unwrap();
        let cases = std::fs::read(dir.join("cases.safetensors")).unwrap();
        let model =
            Model::from_weights(config, &WeightFile::parse(&weights).unwrap(), &device).unwrap();
        let cases = WeightFile::parse(&cases).unwrap();
        let results = pollster::block_on(run_hmar_cases(&model, &cases, &json)).unwrap();
        report(dir, &results, &mut failures);
        // Both teacher-forced passes, and for every run each pass's logits, the refinement
        // inputs, the confidences, the masked sets and the generation.
        let mut groups = vec![
            "decode.image".to_string(),
            "forward.ns_logits".into(),
            "forward.mask_logits".into(),
        ];
        for run in ["greedy.cfg1.0", "greedy.cfg4.0", "sampled"] {
            for group in [
                ".logits.3.step3",
                ".refine_in.h.3.step3",
                ".refine_in.f_hat.3",
                ".masked.3.step3",
                ".idx.3",
                ".f_hat.3",
                ".image01",
            ] {
                groups.push(format!("{run}{group}"));
            }
        }
        groups.push("sampled.conf.3.step2".into());
        for group in groups {
            assert!(
                results.iter().any(|r| r.name.starts_with(&group)),
                "{}: no {group} case ran",
                dir.display()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "HMAR parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn dd_fixtures_match_official_outputs() {
    let dirs: Vec<PathBuf> = fixture_dirs().into_iter().filter(|d| is_dd(d)).collect();
    assert!(!dirs.is_empty(), "no dd fixtures found");
    let device = Device::flex();
    let mut failures = Vec::new();
    for dir in &dirs {
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let weights = std::fs::read(dir.join("weights.safetensors")).unwrap();
        let pair = load_dd_fixture(&json, &WeightFile::parse(&weights).unwrap(), &device).unwrap();
        let cases = std::fs::read(dir.join("cases.safetensors")).unwrap();
        let results =
            pollster::block_on(run_dd_cases(&pair, &WeightFile::parse(&cases).unwrap())).unwrap();
        report(dir, &results, &mut failures);
        // A one-step run and at least one few-step run, each with its decoded image.
        let count = |suffix: &str| results.iter().filter(|r| r.name.ends_with(suffix)).count();
        assert!(
            results.iter().any(|r| r.name == "steps_0.sequence"),
            "{}: no one-step case ran",
            dir.display()
        );
        assert!(
            count(".sequence") >= 2 && count(".image01") >= 2,
            "{}: too few DD cases ran",
            dir.display()
        );
    }
    assert!(
        failures.is_empty(),
        "DD parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn edit_fixtures_match_official_outputs() {
    let dirs: Vec<PathBuf> = fixture_dirs().into_iter().filter(|d| is_edit(d)).collect();
    assert!(!dirs.is_empty(), "no edit fixtures found");
    let device = Device::flex();
    let mut failures = Vec::new();
    for dir in &dirs {
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config = ModelConfig::from_fixture_json(&json).unwrap();
        let tasks = EditTask::from_fixture_json(&json).unwrap();
        let weights = std::fs::read(dir.join("weights.safetensors")).unwrap();
        let cases = std::fs::read(dir.join("cases.safetensors")).unwrap();
        let model =
            Model::from_weights(config, &WeightFile::parse(&weights).unwrap(), &device).unwrap();
        let results = pollster::block_on(run_edit_cases(
            &model,
            &WeightFile::parse(&cases).unwrap(),
            &tasks,
        ))
        .unwrap();
        report(dir, &results, &mut failures);
        // Every task's masks, the input tokens and each cfg's generation must have run.
        for task in &tasks {
            for group in [
                ".mask",
                ".keep.",
                ".cfg1.0.idx.",
                ".cfg4.0.f_hat.",
                ".cfg4.0.image01",
            ] {
                let prefix = format!("edit.{}{group}", task.name);
                assert!(
                    results.iter().any(|r| r.name.starts_with(&prefix)),
                    "{}: no {prefix} case ran",
                    dir.display()
                );
            }
        }
        assert!(
            results
                .iter()
                .any(|r| r.name.starts_with("edit.input_idx."))
        );
    }
    assert!(
        failures.is_empty(),
        "edit parity failures:\n{}",
        failures.join("\n")
    );
}
