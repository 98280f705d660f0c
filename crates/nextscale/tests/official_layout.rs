//! The official checkpoint layouts (`shared/fixtures/official-keys`, read from the official
//! model classes at full size) against the config inference and the tensors our loader reads.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use nextscale::ModelConfig;
use nextscale::convert::infer_config;
use nextscale::model::check_layout;

fn read_tsv(name: &str, prefix: &str) -> BTreeMap<String, Vec<usize>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/official-keys")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 3 && cols[0] == prefix).then(|| {
                let shape = cols[2]
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse().unwrap())
                    .collect();
                (format!("{}.{}", cols[0], cols[1]), shape)
            })
        })
        .collect()
}

#[test]
fn official_vae_and_var_d16_layout_is_what_we_load() {
    let mut shapes = read_tsv("vae_ch160v4096z32+var_d16.tsv", "vae");
    shapes.extend(read_tsv("vae_ch160v4096z32+var_d16.tsv", "var"));
    assert!(shapes.len() > 300);
    let config = infer_config(&shapes, None, None).unwrap();
    assert_eq!(
        config,
        ModelConfig {
            attn_l2_norm: true,
            ..ModelConfig::official(16)
        }
    );
    check_layout(&shapes, &config, &Device::flex()).unwrap();
}

#[test]
fn layout_check_names_the_problem() {
    let mut shapes = read_tsv("vae_ch160v4096z32+var_d16.tsv", "vae");
    shapes.extend(read_tsv("vae_ch160v4096z32+var_d16.tsv", "var"));
    let config = infer_config(&shapes, None, None).unwrap();
    let mut missing = shapes.clone();
    missing.remove("var.blocks.3.ffn.fc2.bias");
    assert!(
        matches!(check_layout(&missing, &config, &Device::flex()), Err(nextscale::Error::MissingTensor(n)) if n == "var.blocks.3.ffn.fc2.bias")
    );
    let mut wrong = shapes.clone();
    wrong.insert("vae.decoder.conv_in.weight".into(), vec![640, 32, 3, 1]);
    assert!(matches!(
        check_layout(&wrong, &config, &Device::flex()),
        Err(nextscale::Error::ShapeMismatch { .. })
    ));
    let mut extra = shapes;
    extra.insert("var.blocks.0.attn.unknown".into(), vec![1]);
    assert!(matches!(
        check_layout(&extra, &config, &Device::flex()),
        Err(nextscale::Error::ExtraTensors(_))
    ));
}

#[test]
fn official_hmar_d16_layout_is_what_we_load() {
    let mut shapes = read_tsv("vae_ch160v4096z32+var_d16.tsv", "vae");
    let hmar = read_tsv("hmar-d16.tsv", "hmar");
    assert_eq!(hmar.len(), 329, "the released d16 state dict");
    shapes.extend(hmar);
    let config = infer_config(&shapes, None, None).unwrap();
    assert_eq!(config, ModelConfig::official_hmar(16));
    let hmar = config.hmar.as_ref().unwrap();
    assert_eq!(hmar.n_layers_train, 8);
    // Only the 2×2 and 3×3 scales are refined by default.
    assert_eq!(hmar.mask_schedule[1], vec![1, 3]);
    assert_eq!(hmar.mask_schedule[2], vec![1, 1, 2, 5]);
    assert_eq!(hmar.mask_schedule[9], vec![256]);
    let sampling = config.sampling.unwrap();
    assert_eq!(
        (sampling.cfg, sampling.top_k, sampling.top_p),
        (1.7, 1000, 0.99)
    );
    check_layout(&shapes, &config, &Device::flex()).unwrap();
}

#[test]
fn official_hmar_sizes_match_the_released_models() {
    // Parameters of the transformer alone (buffers excluded), from the fixtures' README.
    for (depth, params) in [
        (16, 467_691_904usize),
        (20, 845_517_872),
        (24, 1_384_328_960),
        (30, 2_556_324_212),
    ] {
        let config = ModelConfig::official_hmar(depth);
        let expected = nextscale::model::expected_tensors(&config, &Device::flex()).unwrap();
        let count: usize = expected
            .iter()
            .filter(|(n, _)| n.starts_with("hmar."))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(count, params, "HMAR-d{depth}");
    }
}
