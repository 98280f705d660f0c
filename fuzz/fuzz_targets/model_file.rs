//! The model-file parser and the config's validation against the file: `WeightFile::parse`,
//! the `nextscale.config` metadata through `ModelConfig::from_json`, and `check_layout`,
//! which bounds every count in the config by the file before anything is built from it.
//! Every input ends in `Ok` or a typed error, in time and memory bounded by its size.
#![no_main]

use std::collections::BTreeMap;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use nextscale::ModelConfig;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::model::check_layout;
use nextscale::weights::{DD_PREFIX, WeightFile};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WeightFile::parse(data) else {
        return;
    };
    let mut shapes = BTreeMap::new();
    for name in file.names() {
        let shape = file.shape(&name).expect("a listed tensor has a shape");
        if file.check_float(&name).is_ok() {
            let (values, read_shape) = file.read_f32(&name).expect("a float tensor reads");
            assert_eq!(read_shape, shape);
            assert_eq!(values.len(), shape.iter().product::<usize>());
        }
        // The student's `dd.` tensors are checked by its own loader, as `Model` does.
        if !name.starts_with(DD_PREFIX) {
            shapes.insert(name, shape);
        }
    }
    let Some(json) = file.metadata(CONFIG_METADATA_KEY) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_json(json) {
        let _ = check_layout(&shapes, &config, &Device::flex());
    }
});
