//! Loader error paths on real fixture files: every malformed input is a typed error.

mod common;

use std::collections::HashMap;

use burn::tensor::Device;
use nextscale::Error;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::model::Model;
use nextscale::weights::WeightFile;
use safetensors::tensor::TensorView;

/// Rewrites a safetensors file with a transform of its tensors and a metadata map.
fn rewrite(
    bytes: &[u8],
    metadata: HashMap<String, String>,
    keep: impl Fn(&str) -> bool,
    rename: impl Fn(&str) -> String,
) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, v)| (rename(&n), v))
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn model_file(extra_tensor: bool) -> Vec<u8> {
    let (config, bytes) = common::fixture_parts("var-tiny-a");
    let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config.to_json())]);
    let mut out = rewrite(&bytes, meta.clone(), |_| true, |n| n.to_string());
    if extra_tensor {
        out = rewrite(
            &out,
            meta,
            |_| true,
            |n| {
                if n == "var.head.bias" {
                    "var.head.bias2".into()
                } else {
                    n.into()
                }
            },
        );
    }
    out
}

#[test]
fn a_model_file_round_trips() {
    let bytes = model_file(false);
    let model = Model::from_safetensors(&bytes, &Device::flex()).unwrap();
    assert_eq!(model.config.num_classes, 10);
}

#[test]
fn malformed_files_give_typed_errors() {
    let dev = Device::flex();
    let good = model_file(false);
    let err = |bytes: &[u8]| Model::from_safetensors(bytes, &dev).unwrap_err();

    assert!(matches!(err(&good[..good.len() / 2]), Error::Truncated(_)));
    assert!(matches!(err(b"not a model"), Error::BadHeader(_)));
    assert!(matches!(err(&good[..4]), Error::BadHeader(_)));
    // A renamed tensor is one missing and one extra: the missing one is reported first.
    assert!(matches!(err(&model_file(true)), Error::MissingTensor(n) if n == "var.head.bias"));

    let (config, bytes) = common::fixture_parts("var-tiny-a");
    let no_meta = rewrite(&bytes, HashMap::new(), |_| true, |n| n.to_string());
    assert!(matches!(err(&no_meta), Error::Config(m) if m.contains(CONFIG_METADATA_KEY)));

    let bad_json = HashMap::from([(CONFIG_METADATA_KEY.to_string(), "{\"V\": 64".to_string())]);
    assert!(matches!(
        err(&rewrite(&bytes, bad_json, |_| true, |n| n.to_string())),
        Error::Config(_)
    ));

    let unknown = config.to_json().replacen('{', "{\"wings\":2,", 1);
    let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), unknown)]);
    assert!(
        matches!(err(&rewrite(&bytes, meta, |_| true, |n| n.to_string())), Error::Config(m) if m.contains("wings"))
    );

    let mut wider = config.clone();
    wider.embed_dim = 128;
    let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), wider.to_json())]);
    assert!(matches!(
        err(&rewrite(&bytes, meta, |_| true, |n| n.to_string())),
        Error::ShapeMismatch { .. }
    ));

    let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config.to_json())]);
    let with_extra = rewrite(
        &bytes,
        meta.clone(),
        |_| true,
        |n| n.replace("var.lvl_1L", "var.lvl_2L"),
    );
    assert!(matches!(err(&with_extra), Error::ExtraTensors(v) if v == ["var.lvl_2L"]));
    let with_stray = rewrite(
        &bytes,
        meta.clone(),
        |_| true,
        |n| n.replace("var.lvl_1L", "other.thing"),
    );
    assert!(matches!(err(&with_stray), Error::ExtraTensors(v) if v == ["other.thing"]));

    let missing = rewrite(
        &bytes,
        meta,
        |n| n != "var.blocks.1.ffn.fc2.weight",
        |n| n.to_string(),
    );
    assert!(matches!(err(&missing), Error::MissingTensor(n) if n == "var.blocks.1.ffn.fc2.weight"));
}

/// A config whose block counts the file cannot hold (`depth` 10,000,000 or
/// `share_quant_resi` 100,000,000 hung the loader for over 20 s and took 6–7 GB building the
/// names it expected) is refused at once, naming the field, before anything is built; so is
/// one just past what the file holds, and scales whose tokens the position embedding cannot
/// hold.
#[test]
fn block_counts_are_bounded_by_the_file() {
    let dev = Device::flex();
    let (config, bytes) = common::fixture_parts("var-tiny-a");
    let held = safetensors::SafeTensors::deserialize(&bytes).unwrap().len();
    let with = |edit: &dyn Fn(&mut nextscale::ModelConfig)| {
        let mut c = config.clone();
        edit(&mut c);
        let meta = HashMap::from([(CONFIG_METADATA_KEY.to_string(), c.to_json())]);
        let file = rewrite(&bytes, meta, |_| true, |n| n.to_string());
        Model::from_safetensors(&file, &dev).unwrap_err()
    };
    for (edit, field) in [
        (
            &(|c: &mut nextscale::ModelConfig| c.depth = 10_000_000) as &dyn Fn(&mut _),
            "depth",
        ),
        (
            &|c: &mut nextscale::ModelConfig| c.depth = held + 1,
            "depth",
        ),
        (
            &|c: &mut nextscale::ModelConfig| c.num_res_blocks = 10_000_000,
            "num_res_blocks",
        ),
        (
            &|c: &mut nextscale::ModelConfig| c.share_quant_resi = 100_000_000,
            "share_quant_resi",
        ),
    ] {
        let err = with(edit);
        assert!(
            matches!(&err, Error::Config(m) if m.contains(field) && m.contains(&held.to_string())),
            "{field}: {err}"
        );
    }
    let values: usize = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensors()
        .iter()
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum();
    let err = with(&|c| c.patch_nums = [vec![1; 200_000], vec![2, 3, 4]].concat());
    assert!(
        matches!(&err, Error::Config(m) if m.contains("patch_nums (200029 tokens)") && m.contains(&values.to_string())),
        "patch_nums: {err}"
    );
}

#[test]
fn distilled_decoding_files_are_refused_clearly() {
    let dir = common::fixtures().join("dd-tiny-a");
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = nextscale::ModelConfig::from_fixture_json(&json).unwrap();
    let bytes = std::fs::read(dir.join("weights.safetensors")).unwrap();
    let e = Model::from_weights(config, &WeightFile::parse(&bytes).unwrap(), &Device::flex())
        .unwrap_err();
    assert!(matches!(e, Error::Config(m) if m.contains("Distilled-Decoding")));
}
