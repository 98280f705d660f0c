//! The `nextscale` binary end to end on the fixtures: parity, sample, edit, inspect,
//! convert, init, bench (VAR and HMAR) and the error paths a user hits.

mod common;

use common::{nextscale, path};

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use nextscale::model::Model;
use nextscale::parity::{run_hmar_cases, run_var_cases};
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
    let out = nextscale(&["parity", path(&fixtures().join("edit-tiny-a"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for case in [
        "edit.inpaint.cfg1.0.image01",
        "edit.outpaint.keep.2",
        "edit.classedit.cfg4.0.idx.3",
    ] {
        assert!(stdout.contains(case), "{case}: {stdout}");
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// Pixels of a PNG, as RGBA.
fn png(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap().to_rgba8()
}

#[test]
fn edit_keeps_what_the_box_keeps_and_regenerates_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("var-tiny-a");
    // An input image: a sample of the fixture model, 64×64.
    let sampled = dir.path().join("sampled");
    let o = nextscale(&[
        "sample",
        "--model",
        path(&model),
        "--class",
        "1",
        "--seed",
        "3",
        "--out",
        path(&sampled),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let input = sampled.join("1_3.png");
    let edit = |out: &Path, extra: &[&str]| {
        let mut args = vec!["edit", "--model", path(&model), "--image", path(&input)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--seed", "5", "--count", "2", "--out", path(out)]);
        nextscale(&args)
    };
    let out = dir.path().join("inpaint");
    let o = edit(
        &out,
        &["--box", "0.25,0.25,0.75,0.75", "--class", "7", "--previews"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("wrote 2 edits"), "{stdout}");
    for name in ["input.png", "7_5.png", "7_6.png", "7_5.scale04.png"] {
        assert!(out.join(name).exists(), "{name}");
    }
    // The same seed, the same edit.
    let again = dir.path().join("again");
    assert!(
        edit(&again, &["--box", "0.25,0.25,0.75,0.75", "--class", "7"])
            .status
            .success()
    );
    assert_eq!(png(&out.join("7_5.png")), png(&again.join("7_5.png")));
    // Out-painting the same box from a mask file covering everything but the box: the same
    // tokens are generated as with --outpaint.
    let mask = dir.path().join("mask.png");
    let mut m = image::RgbaImage::from_pixel(64, 64, image::Rgba([255, 255, 255, 255]));
    for y in 16..48 {
        for x in 16..48 {
            m.put_pixel(x, y, image::Rgba([0, 0, 0, 255]));
        }
    }
    m.save(&mask).unwrap();
    let (by_box, by_mask) = (dir.path().join("box"), dir.path().join("mask"));
    assert!(
        edit(&by_box, &["--box", "0.25,0.25,0.75,0.75", "--outpaint"])
            .status
            .success()
    );
    assert!(edit(&by_mask, &["--mask", path(&mask)]).status.success());
    assert_eq!(
        png(&by_box.join("uncond_5.png")),
        png(&by_mask.join("uncond_5.png"))
    );
    // Bad input: a box outside [0, 1] is a usage error (2), a missing image a data error (1),
    // a mask that keeps every token an error that says so.
    let o = edit(&dir.path().join("x"), &["--box", "0.2,0.2,1.4,0.8"]);
    assert_eq!(o.status.code(), Some(2));
    let o = nextscale(&[
        "edit",
        "--model",
        path(&model),
        "--image",
        "/no/such.png",
        "--box",
        "0,0,1,1",
        "--out",
        path(&dir.path().join("y")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such.png"));
    let black = dir.path().join("black.png");
    image::RgbaImage::from_pixel(64, 64, image::Rgba([0, 0, 0, 255]))
        .save(&black)
        .unwrap();
    let o = edit(&dir.path().join("z"), &["--mask", path(&black)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to generate"));
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
    // `init` knows the official sizes only: anything else is a usage error.
    let out = nextscale(&[
        "init",
        "--random",
        "d17",
        "--out",
        path(&dir.path().join("x")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("d16"));
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

    // Without the encoder (and in bf16): smaller, says so, and samples what the full file
    // samples (f32) — but cannot edit.
    let slim = dir.path().join("slim.safetensors");
    let convert_slim = |dtype: &str, out: &Path| {
        nextscale(&[
            "convert",
            "--vae",
            path(&fixture.join("weights.safetensors")),
            "--patch-nums",
            "1,2,3,4",
            "--dtype",
            dtype,
            "--no-encoder",
            "--out",
            path(out),
        ])
    };
    assert!(convert_slim("f32", &slim).status.success());
    let bf16 = dir.path().join("slim-bf16.safetensors");
    assert!(convert_slim("bf16", &bf16).status.success());
    assert!(
        std::fs::metadata(&bf16).unwrap().len() < std::fs::metadata(&slim).unwrap().len() * 6 / 10
    );
    let inspected = nextscale(&["inspect", path(&slim)]);
    assert!(String::from_utf8_lossy(&inspected.stdout).contains("no encoder"));
    let sample = |model: &Path, out: &Path| {
        let o = nextscale(&[
            "sample",
            "--model",
            path(model),
            "--class",
            "2",
            "--seed",
            "9",
            "--out",
            path(out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        image::open(out.join("2_9.png")).unwrap().to_rgba8()
    };
    assert_eq!(
        sample(&model_path, &dir.path().join("full")),
        sample(&slim, &dir.path().join("slim"))
    );
    let o = nextscale(&[
        "edit",
        "--model",
        path(&slim),
        "--image",
        path(&dir.path().join("full").join("2_9.png")),
        "--box",
        "0,0,0.5,0.5",
        "--out",
        path(&dir.path().join("e")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no VQ-VAE encoder"));
}

#[test]
fn hmar_converts_inspects_samples_and_benches() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("hmar-tiny-a");
    let out = nextscale(&["parity", path(&fixture)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("sampled.image01") && stdout.contains(" 0 failed"),
        "{stdout}"
    );

    // The fixture's weights (`vae.` + `hmar.`) converted: the config is inferred from the
    // shapes, with the official default mask schedule for these scales.
    let model_path = dir.path().join("hmar.safetensors");
    let out = nextscale(&[
        "convert",
        "--vae",
        path(&fixture.join("weights.safetensors")),
        "--patch-nums",
        "1,2,3,4",
        "--out",
        path(&model_path),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HMAR V 64 Cvae 8 depth 2"), "{stdout}");
    let bytes = std::fs::read(&model_path).unwrap();
    let mut model = Model::from_safetensors(&bytes, &Device::flex()).unwrap();
    assert_eq!(model.family(), "hmar");
    let hmar = model.config.hmar.as_mut().unwrap();
    assert_eq!(hmar.n_layers_train, 1);
    assert_eq!(
        hmar.mask_schedule,
        vec![vec![1], vec![1, 3], vec![1, 1, 2, 5], vec![16]]
    );
    // With the fixture's schedule, the converted file reproduces the official outputs.
    hmar.mask_schedule = vec![vec![1], vec![1, 3], vec![1, 2, 6], vec![4, 5, 4, 3]];
    let cases = std::fs::read(fixture.join("cases.safetensors")).unwrap();
    let json = std::fs::read_to_string(fixture.join("config.json")).unwrap();
    let results = pollster::block_on(run_hmar_cases(
        &model,
        &WeightFile::parse(&cases).unwrap(),
        &json,
    ))
    .unwrap();
    assert!(
        results.len() > 100 && results.iter().all(|r| r.passed()),
        "{results:?}"
    );

    let out = nextscale(&["inspect", path(&model_path)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "1 base + 1 next-scale + 1 mask blocks; mask schedule [[1], [1, 3], [1, 1, 2, 5], [16]]"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("+ hmar "), "{stdout}");

    let sample = |out: &Path| {
        nextscale(&[
            "sample",
            "--model",
            path(&model_path),
            "--class",
            "3",
            "--count",
            "2",
            "--out",
            path(out),
        ])
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for o in [&a, &b] {
        let out = sample(o);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for seed in 0..2 {
        let name = format!("3_{seed}.png");
        let img = png(&a.join(&name));
        assert_eq!(img.dimensions(), (64, 64));
        assert!(
            img.pixels().any(|p| p != img.get_pixel(0, 0)),
            "uniform image"
        );
        assert_eq!(
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap()
        );
    }
    assert_ne!(
        png(&a.join("3_0.png")),
        png(&a.join("3_1.png")),
        "seeds differ"
    );

    let out = nextscale(&[
        "bench",
        "--model",
        path(&model_path),
        "--runs",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What only VAR can do is refused with one line, not a panic.
    let out = nextscale(&[
        "sample",
        "--model",
        path(&model_path),
        "--class",
        "1",
        "--mode",
        "parallel",
        "--out",
        path(&dir.path().join("p")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs a VAR model"), "{stderr}");
}

/// The bundled HMAR emoji model (trained with `train-hmar`, scripts/train.sh).
fn bundled_hmar() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/public/models/hmar-emoji32.safetensors")
}

#[test]
fn bundled_hmar_model_samples_and_writes_each_pass() {
    let model = bundled_hmar();
    let bytes = std::fs::metadata(&model).unwrap().len();
    assert!(
        bytes <= 20_000_000,
        "{bytes} bytes: over the 20 MB bundle budget"
    );
    let out = nextscale(&["inspect", path(&model)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("3 base + 3 next-scale + 3 mask blocks"),
        "{text}"
    );
    assert!(text.contains("(the file's recommendation)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let sample = |out: &Path, previews: bool| {
        let mut args = vec![
            "sample",
            "--model",
            path(&model),
            "--class",
            "Flags",
            "--seed",
            "7",
            "--out",
            path(out),
        ];
        if previews {
            args.push("--previews");
        }
        let o = nextscale(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    sample(&a, true);
    sample(&b, false);
    // A preview per scale and per pass that leaves tokens masked: the official schedule
    // refines the 2×2 scale in 2 passes and the 3×3 scale in 4.
    for name in [
        "Flags_7.scale06.png",
        "Flags_7.scale02.pass0.png",
        "Flags_7.scale03.pass2.png",
    ] {
        assert!(a.join(name).exists(), "{name}");
    }
    assert!(!a.join("Flags_7.scale03.pass3.png").exists());
    assert_eq!(png(&a.join("Flags_7.png")), png(&b.join("Flags_7.png")));
}
