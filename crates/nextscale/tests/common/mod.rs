//! Shared helpers of the integration tests: the fixture root and the tiny fixture model.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use nextscale::ModelConfig;
use nextscale::model::Model;
use nextscale::weights::WeightFile;

/// `shared/fixtures`, next to the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// The config and weight bytes of a fixture directory.
pub fn fixture_parts(name: &str) -> (ModelConfig, Vec<u8>) {
    let dir = fixtures().join(name);
    let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let bytes = std::fs::read(dir.join("weights.safetensors")).unwrap();
    (ModelConfig::from_fixture_json(&json).unwrap(), bytes)
}

/// The var-tiny-a model on flex.
pub fn tiny_model() -> Model {
    let (config, bytes) = fixture_parts("var-tiny-a");
    Model::from_weights(config, &WeightFile::parse(&bytes).unwrap(), &Device::flex()).unwrap()
}
