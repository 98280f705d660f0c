//! The training pipeline end to end on a tiny synthetic data set: data-set errors,
//! VQ-VAE training with a resume, VAR training with export, sampling from the exported
//! model, the evaluator's classifier and `eval`; HMAR's two stages (resumed, exported,
//! sampled, scored); then Distilled Decoding: pairs from the teacher with Ψ (resumed), the
//! student (resumed, exported, trained on from its export) and sampling in its modes; a
//! new teacher on the student file's tokenizer. Few steps: this checks the plumbing and
//! the file formats, not sample quality (the README reports that, with its commands).

mod common;

use common::{nextscale, path as p};

use std::path::Path;

use nextscale::dataset::{Dataset, DatasetInfo, Split};
use nextscale::weights::{DD_PREFIX, WeightFile};

fn ok(args: &[&str]) -> String {
    let out = nextscale(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "nextscale {args:?} failed:\n{text}");
    text
}

/// A run of 3 steps resumed at step 2: the command said so (`needle` names the stage) and
/// the loss log at `csv` has the header and every step once.
#[track_caller]
fn assert_resumed_at_step_2(text: &str, needle: &str, csv: &Path) {
    assert!(text.contains("resuming") && text.contains(needle), "{text}");
    let csv = std::fs::read_to_string(csv).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + 3 steps:\n{csv}");
}

/// Two 32 px images per class: a flat colour per class, one of them held out. With
/// `subclasses`, each image is a subclass of its own (so the held-out one's has no training
/// image).
fn write_dataset(path: &Path, subclasses: bool) {
    let classes = 9;
    let mut data = Dataset {
        info: DatasetInfo {
            class_names: (0..classes).map(|c| format!("class {c}")).collect(),
            attribution: "synthetic".into(),
            names: Vec::new(),
            subclass_names: Vec::new(),
            subclasses: Vec::new(),
        },
        size: 32,
        pixels: Vec::new(),
        labels: Vec::new(),
        split: Vec::new(),
    };
    for c in 0..classes {
        for k in 0..2 {
            let rgb = [(c * 28) as u8, (255 - c * 28) as u8, (k * 100) as u8];
            data.pixels.extend((0..32 * 32).flat_map(|_| rgb));
            data.labels.push(c);
            data.split
                .push(if k == 1 { Split::HeldOut } else { Split::Train });
            data.info.names.push(format!("c{c}k{k}"));
            if subclasses {
                data.info.subclasses.push(data.info.subclass_names.len());
                data.info.subclass_names.push(format!("c{c}k{k}"));
            }
        }
    }
    std::fs::write(path, data.to_bytes().unwrap()).unwrap();
}

#[test]
fn data_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("d.st");
    let data = || nextscale(&["data", "--google", p(dir.path()), "--out", p(&out_file)]);
    let out = data();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("emoji.json"), "{stderr}");
    std::fs::write(dir.path().join("emoji.json"), "[{\"image\": 3}]").unwrap();
    let out = data();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsing"));
    let out = nextscale(&[
        "train-vqvae",
        "--data",
        p(&dir.path().join("emoji.json")),
        "--out",
        p(dir.path()),
    ]);
    assert!(!out.status.success());
}

#[test]
fn train_resume_export_sample_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.safetensors");
    write_dataset(&data, false);
    let vq = dir.path().join("vq");
    let common = ["--data", p(&data), "--batch", "4"];
    ok(&[
        &[
            "train-vqvae",
            "--out",
            p(&vq),
            "--steps",
            "3",
            "--until",
            "2",
            "--checkpoint-every",
            "2",
            "--reinit-every",
            "1",
        ][..],
        &common,
    ]
    .concat());
    let text = ok(&[
        &["train-vqvae", "--out", p(&vq), "--steps", "3"][..],
        &common,
    ]
    .concat());
    assert_resumed_at_step_2(&text, "at step 2", &vq.join("loss.csv"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vq.join("report.json")).unwrap()).unwrap();
    assert!(report["held_out"]["psnr_db"].as_f64().unwrap().is_finite());

    let var = dir.path().join("var");
    let model = dir.path().join("model.safetensors");
    let ck = vq.join("checkpoint.safetensors");
    ok(&[
        &[
            "train-var",
            "--out",
            p(&var),
            "--vqvae",
            p(&ck),
            "--steps",
            "2",
            "--sample-every",
            "2",
            "--export",
            p(&model),
        ][..],
        &common,
    ]
    .concat());
    assert!(var.join("samples_000002.png").exists());
    let text = ok(&["inspect", p(&model)]);
    assert!(text.contains("class 8"), "{text}");

    let out = dir.path().join("samples");
    ok(&[
        "sample",
        "--model",
        p(&model),
        "--class",
        "class 2",
        "--count",
        "2",
        "--out",
        p(&out),
    ]);
    let pngs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, 2);

    let grid = dir.path().join("grid.png");
    ok(&[
        "grid",
        "--model",
        p(&model),
        "--per-class",
        "2",
        "--out",
        p(&grid),
    ]);
    let grid_png = image::open(&grid).unwrap();
    // 9 rows of 2 tiles, 32 px at zoom 2 plus a 2 px border each.
    assert_eq!((grid_png.width(), grid_png.height()), (2 * 66, 9 * 66));

    let classifier = dir.path().join("classifier.safetensors");
    ok(&[
        "train-classifier",
        "--data",
        p(&data),
        "--out",
        p(&classifier),
        "--steps",
        "3",
        "--batch",
        "4",
    ]);
    let json = dir.path().join("eval.json");
    let scoring = [
        "--model",
        p(&model),
        "--data",
        p(&data),
        "--classifier",
        p(&classifier),
        "--per-class",
        "2",
    ];
    let text = ok(&[&["eval"], &scoring[..], &["--json", p(&json)]].concat());
    assert!(text.contains("conditional accuracy"), "{text}");
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(eval["samples"], 18);
    let acc = eval["conditional_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(eval["fd"].as_f64().unwrap() >= -1e-9);

    // HMAR on the same tokenizer: the next-scale stage, then the masked fine-tune
    // (resumed), export, and the exported model samples, inspects and scores as HMAR.
    let hmar = dir.path().join("hmar");
    let hmar_model = dir.path().join("hmar.safetensors");
    let hmar_args = [
        "train-hmar",
        "--out",
        p(&hmar),
        "--vqvae",
        p(&ck),
        "--steps",
        "2",
        "--sample-every",
        "2",
        "--checkpoint-every",
        "2",
    ];
    ok(&[&hmar_args[..], &["--mask-steps", "2"], &common].concat());
    assert!(hmar.join("ns/samples_000002.png").exists());
    assert!(hmar.join("mask/samples_000002.png").exists());
    let text = ok(&[
        &hmar_args[..],
        &["--mask-steps", "3", "--export", p(&hmar_model)],
        &common,
    ]
    .concat());
    assert_resumed_at_step_2(&text, "mask at step 2", &hmar.join("mask/loss.csv"));
    let text = ok(&["inspect", p(&hmar_model)]);
    assert!(
        text.contains("3 base + 3 next-scale + 3 mask blocks"),
        "{text}"
    );
    let hmar_samples = dir.path().join("hmar-samples");
    ok(&[
        "sample",
        "--model",
        p(&hmar_model),
        "--class",
        "3",
        "--count",
        "2",
        "--out",
        p(&hmar_samples),
    ]);
    assert!(hmar_samples.join("class_3_1.png").exists());
    let text = ok(&[
        "eval",
        "--model",
        p(&hmar_model),
        "--data",
        p(&data),
        "--classifier",
        p(&classifier),
        "--per-class",
        "2",
    ]);
    assert!(text.contains("conditional accuracy"), "{text}");

    // Tuning the sampling stores the lowest-FD setting, which then becomes the default.
    let grid = ["--cfg", "1,3", "--top-k", "0", "--top-p", "0.5", "--write"];
    let tuned = ok(&[&["tune-sampling"], &scoring[..], &grid[..]].concat());
    assert!(
        tuned.contains("stored it as the default sampling"),
        "{tuned}"
    );
    let inspected = ok(&["inspect", p(&model)]);
    let line = inspected
        .lines()
        .find(|l| l.starts_with("sampling"))
        .expect("a sampling line");
    assert!(
        line.contains("top-k 0, top-p 0.5 (the file's recommendation)"),
        "{line}"
    );
    let rescored = ok(&[&["eval"], &scoring[..]].concat());
    assert!(rescored.contains("top-k 0, top-p 0.5)"), "{rescored}");

    // Distilled Decoding on the exported teacher.
    let teacher_only = nextscale(&[
        "sample",
        "--model",
        p(&model),
        "--class",
        "1",
        "--mode",
        "dd1",
        "--out",
        p(&out),
    ]);
    assert!(!teacher_only.status.success());
    assert!(
        String::from_utf8_lossy(&teacher_only.stderr).contains("no Distilled-Decoding student")
    );
    let pairs = dir.path().join("pairs.safetensors");
    let pairs_args = [
        "distill-data",
        "--model",
        p(&model),
        "--out",
        p(&pairs),
        "--batch",
        "4",
        "--flow-steps",
        "8",
    ];
    ok(&[&pairs_args[..], &["--count", "4"]].concat());
    // A new recommended sampling in the teacher's file leaves its pairs extendable: the
    // pairs take their sampling from distill-data's own options.
    let retune = ["--cfg", "1", "--top-k", "0", "--top-p", "0.6", "--write"];
    ok(&[&["tune-sampling"], &scoring[..], &retune[..]].concat());
    let text = ok(&[&pairs_args[..], &["--count", "6"]].concat());
    assert!(
        text.contains("extending") && text.contains("from 4 pairs"),
        "{text}"
    );
    assert!(text.contains("6 pairs"), "{text}");
    let changed = nextscale(&[&pairs_args[..], &["--count", "8", "--cfg", "3"]].concat());
    assert!(
        !changed.status.success(),
        "other settings must not extend the file"
    );
    // --model-sampling draws with the file's recommendation (now cfg 1, top-k 0, top-p
    // 0.6): the same settings as those options by hand, so each extends the other's file.
    let by_file = dir.path().join("pairs-by-file.safetensors");
    let file_args = [&pairs_args[..4], &[p(&by_file)], &pairs_args[5..]].concat();
    ok(&[&file_args[..], &["--model-sampling", "--count", "4"]].concat());
    let by_hand = [
        "--cfg", "1", "--top-k", "0", "--top-p", "0.6", "--count", "6",
    ];
    let text = ok(&[&file_args[..], &by_hand[..]].concat());
    assert!(text.contains("from 4 pairs"), "{text}");
    let both = nextscale(&[&file_args[..], &["--model-sampling", "--cfg", "1"]].concat());
    assert!(!both.status.success(), "--model-sampling replaces --cfg");

    let dd = dir.path().join("dd");
    let student = dir.path().join("student.safetensors");
    let dd_args = [
        "distill",
        "--teacher",
        p(&model),
        "--data",
        p(&pairs),
        "--out",
        p(&dd),
        "--batch",
        "3",
        "--loss-split-t",
        "3",
        "--t-list",
        "0,3",
    ];
    ok(&[
        &dd_args[..],
        &[
            "--steps",
            "2",
            "--checkpoint-every",
            "2",
            "--sample-every",
            "2",
        ],
    ]
    .concat());
    assert!(
        dd.join("samples_dd1_000002.png").exists() && dd.join("samples_dd2_000002.png").exists()
    );
    let text = ok(&[&dd_args[..], &["--steps", "3", "--export", p(&student)]].concat());
    assert_resumed_at_step_2(&text, "at step 2", &dd.join("loss.csv"));
    let text = ok(&["inspect", p(&student)]);
    assert!(text.contains("loss_split_t 3, t_list [0, 3]"), "{text}");
    for mode in ["dd1", "dd2", "parallel"] {
        let out = dir.path().join(mode);
        ok(&[
            "sample",
            "--model",
            p(&student),
            "--class",
            "1",
            "--count",
            "2",
            "--mode",
            mode,
            "--out",
            p(&out),
        ]);
        assert!(
            out.join("class_1_0.png").exists() && out.join("class_1_1.png").exists(),
            "{mode}"
        );
    }

    // An exported student goes on training from its own tensors, in a new run: at learning
    // rate 0 its export gives them back unchanged. The new run's directory and
    // --loss-split-t replace dd_args[6] and dd_args[10].
    let from_file = |run: &str, init: &Path, split: &str, extra: &[&str]| {
        let run = dir.path().join(run);
        let head = [
            &dd_args[..6],
            &[p(&run)],
            &dd_args[7..10],
            &[split],
            &dd_args[11..],
        ];
        let tail = ["--init-student", p(init), "--steps", "1"];
        nextscale(&[&head.concat()[..], &tail[..], extra].concat())
    };
    let again = dir.path().join("again.safetensors");
    let ft = from_file(
        "dd-ft",
        &student,
        "3",
        &["--lr", "0", "--export", p(&again)],
    );
    let stderr = String::from_utf8_lossy(&ft.stderr);
    assert!(ft.status.success(), "{stderr}");
    let (before, after) = (
        std::fs::read(&student).unwrap(),
        std::fs::read(&again).unwrap(),
    );
    let before = WeightFile::parse(&before).unwrap();
    let after = WeightFile::parse(&after).unwrap();
    let dd_names: Vec<String> = before
        .names()
        .into_iter()
        .filter(|n| n.starts_with(DD_PREFIX))
        .collect();
    assert!(!dd_names.is_empty());
    for name in &dd_names {
        let (was, is) = (
            before.read_f32(name).unwrap(),
            after.read_f32(name).unwrap(),
        );
        assert_eq!(was, is, "{name}");
    }
    // Another split than the student's, or a file without a student, is refused.
    for (run, init, split, needle) in [
        ("dd-split", &student, "2", "--loss-split-t and --t-list"),
        ("dd-none", &model, "3", "no Distilled-Decoding student"),
    ] {
        let refused = from_file(run, init, split, &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains(needle),
            "{run}: {stderr}"
        );
    }

    // A new teacher on the tokenizer of a file that carries a student: it takes the VQ-VAE
    // and the architecture, not the student (whose tensors the new file would lack).
    let retrained = dir.path().join("retrained.safetensors");
    ok(&[
        &[
            "train-var",
            "--out",
            p(&dir.path().join("var-again")),
            "--vqvae",
            p(&student),
            "--steps",
            "1",
            "--sample-every",
            "1",
            "--export",
            p(&retrained),
        ][..],
        &common,
    ]
    .concat());
    let text = ok(&["inspect", p(&retrained)]);
    assert!(text.contains("no student (mode var only)"), "{text}");

    // A teacher conditioned on subclasses: its file keeps the nine classes and draws each
    // image under a subclass of its class, and its pairs record the row drawn.
    let sub_data = dir.path().join("sub-data.safetensors");
    write_dataset(&sub_data, true);
    let sub_model = dir.path().join("sub.safetensors");
    ok(&[
        "train-var",
        "--data",
        p(&sub_data),
        "--batch",
        "4",
        "--subclasses",
        "--out",
        p(&dir.path().join("var-sub")),
        "--vqvae",
        p(&ck),
        "--steps",
        "1",
        "--sample-every",
        "1",
        "--export",
        p(&sub_model),
    ]);
    let config = nextscale::Model::from_safetensors(
        &std::fs::read(&sub_model).unwrap(),
        &burn::tensor::Device::flex(),
    )
    .unwrap()
    .config;
    assert_eq!((config.num_classes, config.subclasses.len()), (9, 18));
    let sub_pairs = dir.path().join("sub-pairs.safetensors");
    ok(&[
        "distill-data",
        "--model",
        p(&sub_model),
        "--out",
        p(&sub_pairs),
        "--count",
        "9",
        "--batch",
        "9",
        "--flow-steps",
        "2",
    ]);
    let pairs =
        nextscale::train::distill::DistillPairs::from_bytes(&std::fs::read(&sub_pairs).unwrap())
            .unwrap();
    // Class c's only subclass with a training image is row 2c.
    assert_eq!(pairs.labels, (0..9).map(|c| 2 * c).collect::<Vec<i64>>());
}
