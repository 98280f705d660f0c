//! `Model::from_safetensors` on the flex device, seeded with valid tiny model files (made by
//! `nextscale init --config fuzz/seeds/models/*.json`); a file that loads then generates one image
//! greedily, so weights the loader accepts (NaN, huge) cannot make generation panic either.
#![no_main]

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use nextscale::pipeline::{GenerateRequest, Generation, PreviewMode};
use nextscale::Model;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_safetensors(data, &Device::flex()) else {
        return;
    };
    let mut request = GenerateRequest::new(None, 1, 0);
    request.sampling.top_k = 1;
    request.preview = PreviewMode::Fast;
    if let Ok(generation) = Generation::new(&model, request) {
        let _ = pollster::block_on(generation.run_to_end());
    }
});
