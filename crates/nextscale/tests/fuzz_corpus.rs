//! Replays the committed fuzz inputs (`fuzz/seeds/`: hand-made seeds and every crash
//! reproducer once fixed; `fuzz/corpus/<target>/`: what libFuzzer kept) through the checks
//! of their fuzz targets in `fuzz/fuzz_targets/`, so that `cargo test` keeps every input the
//! fuzzers ever broke on answered with a typed error or a result, never a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::input_image::{decode_png, on_white, square};
use nextscale::model::check_layout;
use nextscale::pipeline::{GenerateRequest, Generation};
use nextscale::weights::{DD_PREFIX, WeightFile};
use nextscale::{Model, ModelConfig};

/// Every seed and corpus file of one target, with its name; at least `min` of them.
fn corpus(target: &str, seeds: &str, min: usize) -> Vec<(String, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in [
        fuzz.join("seeds").join(seeds),
        fuzz.join("corpus").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    assert!(files.len() >= min, "{target}: {} inputs", files.len());
    files
}

#[test]
fn model_file_corpus() {
    let mut accepted = 0;
    for (name, bytes) in corpus("model_file", "models", 3) {
        let Ok(file) = WeightFile::parse(&bytes) else {
            continue;
        };
        let mut shapes = BTreeMap::new();
        for tensor in file.names() {
            let shape = file.shape(&tensor).unwrap();
            if file.check_float(&tensor).is_ok() {
                let (values, read_shape) = file.read_f32(&tensor).unwrap();
                assert_eq!(read_shape, shape, "{name}: {tensor}");
                assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
            }
            // The student's `dd.` tensors are checked by its own loader, as `Model` does.
            if !tensor.starts_with(DD_PREFIX) {
                shapes.insert(tensor, shape);
            }
        }
        let config = file
            .metadata(CONFIG_METADATA_KEY)
            .map(ModelConfig::from_json);
        if let Some(Ok(config)) = config {
            accepted += check_layout(&shapes, &config, &Device::flex()).is_ok() as usize;
        }
    }
    // The three seed model files (`fuzz/seeds/models/`) pass the layout check.
    assert!(accepted >= 3, "{accepted} files passed");
}

#[test]
fn config_json_corpus() {
    let mut valid = 0;
    for (name, bytes) in corpus("config_json", "config_json", 3) {
        let Ok(json) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(config) = ModelConfig::from_json(json) else {
            continue;
        };
        let _ = (config.seq_len(), config.latent_size(), config.num_phi());
        let again = ModelConfig::from_json(&config.to_json()).unwrap();
        assert_eq!(again, config, "{name} round-trips");
        valid += 1;
    }
    assert!(valid >= 3, "{valid} valid configs");
}

#[test]
fn model_load_corpus() {
    let mut generated = 0;
    for (_, bytes) in corpus("model_load", "models", 3) {
        let Ok(model) = Model::from_safetensors(&bytes, &Device::flex()) else {
            continue;
        };
        let mut request = GenerateRequest::new(None, 1, 0);
        request.sampling.top_k = 1;
        let Ok(generation) = Generation::new(&model, request) else {
            continue;
        };
        // A typed error (weights that give NaN logits, say) is an answer too; a panic fails.
        generated += pollster::block_on(generation.run_to_end()).is_ok() as usize;
    }
    assert!(generated >= 3, "{generated} models generated");
}

#[test]
fn input_image_corpus() {
    let mut decoded = 0;
    for (name, bytes) in corpus("input_image", "input_image", 5) {
        match decode_png(&bytes) {
            Ok(img) => {
                let img = on_white(square(&img, 8).unwrap());
                assert_eq!(img.dimensions(), (8, 8), "{name}");
                decoded += 1;
            }
            Err(e) => assert_eq!(e.code(), "E_BAD_REQUEST", "{name}: {e}"),
        }
    }
    // The five hand-made seeds decode.
    assert!(decoded >= 5, "{decoded} images decoded");
}
