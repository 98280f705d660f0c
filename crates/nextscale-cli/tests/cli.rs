//! The `nextscale` binary end to end on the fixtures: parity, sample, inspect, convert and
//! the error paths a user hits.

mod common;

use common::{nextscale, path};

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use nextscale::model::Model;
use nextscale::parity::run_var_cases;
use nextscale::weights::WeightFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

#[test]
fn parity_passes_on_the_var_and_dd_fixtures() {
    let out = nextscale(&["parity", path(&fixtures().join("var-tiny-a"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("greedy.cfg4.0.image01") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
    let out = nextscale(&["parity", path(&fixtures().join("dd-tiny-a"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("steps_0_2.image01") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
}

#[test]
fn sample_writes_images_and_previews_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        let o = nextscale(&[
            "sample",
            "--model",
            path(&fixtures().join("var-tiny-a")),
            "--class",
            "3",
            "--seed",
            "0",
            "--count",
            "4",
            "--batch",
            "2",
            "--out",
            path(out),
            "--previews",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a);
    run(&b);
    for seed in 0..4 {
        let img = image::open(a.join(format!("3_{seed}.png")))
            .unwrap()
            .to_rgba8();
        assert_eq!(img.dimensions(), (64, 64));
        assert!(
            img.pixels().any(|p| p != img.get_pixel(0, 0)),
            "uniform image"
        );
        for scale in 1..=4 {
            assert!(a.join(format!("3_{seed}.scale{scale:02}.png")).exists());
        }
        let same = |name: String| {
            std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap()
        };
        assert!(
            same(format!("3_{seed}.png")),
            "seed {seed} not reproducible"
        );
    }
}

#[test]
fn user_errors_are_reported_without_panics() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let fixture = fixtures().join("var-tiny-a");
    let out_dir = dir.path().join("o");
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "sample",
                "--model",
                path(&corrupt),
                "--class",
                "1",
                "--out",
                path(&out_dir),
            ],
            "bad model file header",
        ),
        (
            vec![
                "sample",
                "--model",
                path(&fixture),
                "--class",
                "42",
                "--out",
                path(&out_dir),
            ],
            "out of range",
        ),
        (
            vec![
                "sample",
                "--model",
                path(&fixture),
                "--class",
                "dog",
                "--out",
                path(&out_dir),
            ],
            "unknown class",
        ),
        (
            vec![
                "sample",
                "--model",
                path(&fixture),
                "--class",
                "1",
                "--cfg",
                "NaN",
                "--out",
                path(&out_dir),
            ],
            "cfg",
        ),
    ];
    for (args, message) in cases {
        let out = nextscale(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn inspect_and_convert_round_trip_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("var-tiny-a");
    let out = nextscale(&["inspect", path(&fixture)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("parameters  vae 4375003 + var 165256"));

    let model_path = dir.path().join("tiny.safetensors");
    let out = nextscale(&[
        "convert",
        "--vae",
        path(&fixture.join("weights.safetensors")),
        "--patch-nums",
        "1,2,3,4",
        "--out",
        path(&model_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The converted file reproduces the official outputs.
    let bytes = std::fs::read(&model_path).unwrap();
    let model = Model::from_safetensors(&bytes, &Device::flex()).unwrap();
    assert!(
        model.config.preview.is_some(),
        "convert stores a preview matrix"
    );
    let cases = std::fs::read(fixture.join("cases.safetensors")).unwrap();
    let results =
        pollster::block_on(run_var_cases(&model, &WeightFile::parse(&cases).unwrap())).unwrap();
    assert!(results.iter().all(|r| r.passed()), "{results:?}");

    let half = dir.path().join("tiny16.safetensors");
    let out = nextscale(&[
        "convert",
        "--vae",
        path(&fixture.join("weights.safetensors")),
        "--patch-nums",
        "1,2,3,4",
        "--dtype",
        "f16",
        "--out",
        path(&half),
    ]);
    assert!(out.status.success());
    assert!(std::fs::metadata(&half).unwrap().len() < bytes.len() as u64 * 6 / 10);
    let out = nextscale(&[
        "sample",
        "--model",
        path(&half),
        "--class",
        "0",
        "--out",
        path(&dir.path().join("s")),
    ]);
    assert!(out.status.success());
}
