//! Loading models from disk: model files or fixture directories, on a chosen device.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::{Device, DeviceKind};
use nextscale::ModelConfig;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::model::Model;
use nextscale::weights::WeightFile;

use super::Backend;

/// The burn device of a backend choice.
pub fn device(backend: Backend) -> Device {
    match backend {
        Backend::Flex => Device::flex(),
        Backend::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The config in a model file's metadata; `path` names the file when it has none.
pub fn file_config(file: &WeightFile, path: &Path) -> Result<ModelConfig> {
    let json = file
        .metadata(CONFIG_METADATA_KEY)
        .with_context(|| format!("{} has no config", path.display()))?;
    Ok(ModelConfig::from_json(json)?)
}

/// Loads a model file, or a fixture directory (config.json + weights.safetensors).
pub fn model(path: &Path, device: &Device) -> Result<Model> {
    let model = if path.is_dir() {
        let json = std::fs::read_to_string(path.join("config.json"))
            .with_context(|| format!("reading {}/config.json", path.display()))?;
        let config = ModelConfig::from_fixture_json(&json)?;
        let bytes = read(&path.join("weights.safetensors"))?;
        Model::from_weights(config, &WeightFile::parse(&bytes)?, device)?
    } else {
        Model::from_safetensors(&read(path)?, device)?
    };
    Ok(model)
}
