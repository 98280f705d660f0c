//! Bad input through every subcommand: missing and unknown flags, out-of-range values,
//! unreadable and unwritable paths. A command line that does not parse exits 2, a bad model
//! or data file (or a value the model cannot take) exits 1, each with exactly one line on
//! stderr that names the problem, and none panics (`common::nextscale` checks that).

mod common;

use std::path::{Path, PathBuf};

use common::{nextscale, path};

/// Every subcommand, as `nextscale --help` lists them.
const SUBCOMMANDS: [&str; 17] = [
    "sample",
    "edit",
    "inspect",
    "parity",
    "bench",
    "convert",
    "init",
    "data",
    "train-vqvae",
    "train-var",
    "train-hmar",
    "distill-data",
    "distill",
    "train-classifier",
    "eval",
    "grid",
    "tune-sampling",
];

/// Exit code of a command line that does not parse.
const USAGE: i32 = 2;
/// Exit code of a run that fails on its model, data or paths.
const FAILED: i32 = 1;

/// The tiny model with a distilled student that the fuzz targets use (V 8, 2 classes).
fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/models/tiny-dd.safetensors")
}

/// Runs `args` and checks the exit code and that stderr is one line containing `needle`.
#[track_caller]
fn expect(args: &[&str], code: i32, needle: &str) {
    let out = nextscale(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: no `{needle}` in: {stderr}"
    );
}

#[test]
fn unknown_flags_are_usage_errors_in_every_subcommand() {
    for sub in SUBCOMMANDS {
        expect(
            &[sub, "--no-such-flag"],
            USAGE,
            "unexpected argument '--no-such-flag'",
        );
        expect(
            &[sub, "--no-such-flag"],
            USAGE,
            &format!("nextscale {sub} --help"),
        );
    }
    expect(&["no-such-command"], USAGE, "unrecognized subcommand");
}

#[test]
fn missing_flags_are_usage_errors() {
    let cases: [(&[&str], &str); 9] = [
        (&["sample", "--out", "o"], "--class <CLASS>"),
        (&["sample", "--class", "1"], "--out <OUT>"),
        (
            &["edit", "--image", "i.png", "--box", "0,0,1,1", "--out", "o"],
            "--model <MODEL>",
        ),
        (
            &["edit", "--model", "m", "--image", "i.png", "--out", "o"],
            "--box <EDIT_BOX>",
        ),
        (&["inspect"], "<PATH>"),
        (&["parity"], "<DIR>"),
        (&["convert", "--out", "o"], "--vae <VAE>"),
        (&["init", "--out", "o"], "--random <RANDOM>"),
        (&["grid"], "--out <OUT>"),
    ];
    for (args, needle) in cases {
        expect(args, USAGE, needle);
    }
    expect(&["data"], USAGE, "--google <GOOGLE>");
}

#[test]
fn out_of_range_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let out = dir.path().join("o");
    let sample = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["sample", "--model", path(&model), "--out", path(&out)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |extra: &[&str], code: i32, needle: &str| {
        let args = sample(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect(&args, code, needle);
    };
    // Checked against the model: exit 1.
    run(
        &["--class", "2"],
        FAILED,
        "class label 2 is out of range: the model has 2 classes",
    );
    run(&["--class", "dog"], FAILED, "unknown class");
    run(
        &["--class", "1", "--top-k", "9"],
        FAILED,
        "top-k 9 is more than the model's 8 tokens",
    );
    run(
        &[
            "--class",
            "1",
            "--seed",
            "18446744073709551615",
            "--count",
            "2",
        ],
        FAILED,
        "runs past the largest seed",
    );
    // tune-sampling checks its top-k grid against the model before it scores anything.
    expect(
        &[
            "tune-sampling",
            "--model",
            path(&model),
            "--data",
            path(&dir.path().join("missing.safetensors")),
            "--top-k",
            "0,9",
        ],
        FAILED,
        "top-k 9 is more than the model's 8 tokens",
    );
    // Checked without the model: usage errors, exit 2.
    let sample_usage: [(&[&str], &str); 12] = [
        (&["--top-k", "-1"], "unexpected argument '-1'"),
        (&["--top-p", "1.5"], "top_p 1.5 must be in [0, 1]"),
        (&["--top-p=-0.1"], "top_p -0.1 must be in [0, 1]"),
        (&["--cfg", "NaN"], "cfg NaN must be a finite number ≥ 0"),
        (&["--cfg=-1"], "cfg -1 must be a finite number ≥ 0"),
        (&["--cfg", "inf"], "cfg inf must be a finite number ≥ 0"),
        (&["--cfg", "high"], "`high` is not a number"),
        (&["--count", "0"], "`0` is not an integer ≥ 1"),
        (&["--batch", "65"], "`65` is not an integer in 1..=64"),
        (&["--seed", "18446744073709551616"], "--seed"),
        (&["--mode", "dd3"], "invalid value 'dd3'"),
        (&["--preview-mode", "slow"], "invalid value 'slow'"),
    ];
    for (extra, needle) in sample_usage {
        run(&[&["--class", "1"], extra].concat(), USAGE, needle);
    }
    let edit = ["edit", "--model", "m", "--image", "i", "--out", "o"];
    let usage: [(&[&str], &str); 9] = [
        (&[&edit[..], &["--box", "0,0,2,2"]].concat(), "--box"),
        (
            &[&edit[..], &["--box", "0,0,1,1", "--count", "65"]].concat(),
            "`65` is not an integer in 1..=64",
        ),
        (&["bench", "--runs", "0"], "`0` is not an integer ≥ 1"),
        (
            &["grid", "--per-class", "0", "--out", "o"],
            "`0` is not an integer ≥ 1",
        ),
        (&["eval", "--per-class", "0"], "`0` is not an integer ≥ 1"),
        (
            &["eval", "--batch", "65"],
            "`65` is not an integer in 1..=64",
        ),
        (
            &["distill-data", "--count", "0"],
            "`0` is not an integer ≥ 1",
        ),
        (
            &["bench", "--batch", "0"],
            "`0` is not an integer in 1..=64",
        ),
        (&["init", "--random", "d17", "--out", "o"], "d16"),
    ];
    for (args, needle) in usage {
        expect(args, USAGE, needle);
    }
    for sub in [
        "train-vqvae",
        "train-var",
        "train-hmar",
        "distill",
        "train-classifier",
    ] {
        expect(&[sub, "--steps", "0"], USAGE, "`0` is not an integer ≥ 1");
        expect(&[sub, "--batch", "0"], USAGE, "`0` is not an integer ≥ 1");
    }
    for flag in ["--mask-steps", "--n-layers-train"] {
        expect(
            &["train-hmar", flag, "0"],
            USAGE,
            "`0` is not an integer ≥ 1",
        );
    }
    // 0 is the official "off" of both masks (`sample_with_top_k_top_p_`), not an error.
    let args = sample(&["--class", "1", "--top-k", "0", "--top-p", "0"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = nextscale(&args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(out.join("1_0.png").exists());
}

#[test]
fn unreadable_and_unwritable_paths() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let model = path(&model);
    let missing = dir.path().join("missing.safetensors");
    let missing = path(&missing);
    // A regular file where a directory should be: nothing can be written under it.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let blocked = file.join("out");
    let blocked = path(&blocked);
    let not_png = dir.path().join("not.png");
    std::fs::write(&not_png, b"GIF89a").unwrap();
    let not_png = path(&not_png);
    let no_encoder = tiny_model().with_file_name("tiny-no-encoder.safetensors");
    let no_encoder = path(&no_encoder);
    let tiny_png = tiny_model().with_file_name("../input_image/rgba8.png");
    let image = path(&tiny_png);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sample", "--model", missing, "--class", "1", "--out", "o"],
            "missing.safetensors",
        ),
        (
            vec!["sample", "--model", model, "--class", "1", "--out", blocked],
            "creating",
        ),
        (
            vec!["sample", "--model", not_png, "--class", "1", "--out", "o"],
            "bad model file header",
        ),
        (vec!["inspect", missing], "missing.safetensors"),
        (vec!["inspect", not_png], "bad model file header"),
        (vec!["parity", missing], "missing.safetensors"),
        (vec!["bench", "--model", missing], "missing.safetensors"),
        (
            vec!["grid", "--model", missing, "--out", "o"],
            "missing.safetensors",
        ),
        (vec!["eval", "--data", missing], "missing.safetensors"),
        (
            vec![
                "edit", "--model", model, "--image", missing, "--box", "0,0,1,1", "--out", "o",
            ],
            "missing.safetensors",
        ),
        (
            vec![
                "edit", "--model", model, "--image", not_png, "--box", "0,0,1,1", "--out", "o",
            ],
            "bad image",
        ),
        (
            vec![
                "edit", "--model", no_encoder, "--image", image, "--box", "0,0,1,1", "--out", "o",
            ],
            "no VQ-VAE encoder",
        ),
        (
            vec![
                "edit", "--model", model, "--image", image, "--box", "0,0,1,1", "--out", blocked,
            ],
            "creating",
        ),
        (
            vec!["convert", "--vae", missing, "--out", "o"],
            "missing.safetensors",
        ),
        (
            vec!["init", "--config", missing, "--out", "o"],
            "missing.safetensors",
        ),
        (vec!["init", "--config", not_png, "--out", "o"], "config"),
        (vec!["init", "--random", "d16", "--out", blocked], "writing"),
        (
            vec!["data", "--google", missing, "--out", "o"],
            "missing.safetensors",
        ),
        (
            vec!["train-vqvae", "--data", missing, "--out", blocked],
            "missing.safetensors",
        ),
        (
            vec!["train-var", "--data", missing, "--out", blocked],
            "missing.safetensors",
        ),
        (
            vec!["train-hmar", "--data", missing, "--out", blocked],
            "missing.safetensors",
        ),
        (
            vec!["distill-data", "--model", missing],
            "missing.safetensors",
        ),
        (vec!["distill", "--teacher", missing], "missing.safetensors"),
        (
            vec!["train-classifier", "--data", missing],
            "missing.safetensors",
        ),
        (
            vec!["tune-sampling", "--model", model, "--data", missing],
            "missing.safetensors",
        ),
    ];
    for (args, needle) in cases {
        expect(&args, FAILED, needle);
    }
}
