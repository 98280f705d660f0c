//! The wasm engine's generate-request parser on any JSON: `GenerateOptions::from_value`,
//! then `to_request` against a tiny model with a distilled student; a request it accepts
//! then runs to the end (so extreme but valid values such as cfg 1e300 or top-k V are run,
//! not only parsed).
#![no_main]

use std::sync::OnceLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use nextscale::Model;
use nextscale::pipeline::Generation;
use nextscale_wasm::request::GenerateOptions;

/// `nextscale init --config fuzz/seeds/models/tiny-dd.json --dtype f16`.
static MODEL_FILE: &[u8] = include_bytes!("../seeds/models/tiny-dd.safetensors");

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::from_safetensors(MODEL_FILE, &Device::flex()).expect("seed model"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(options) = GenerateOptions::from_value(value) else {
        return;
    };
    let Ok(request) = options.to_request(model()) else {
        return;
    };
    let mut generation = Generation::new(model(), request).expect("a checked request starts");
    let steps = generation.num_scales();
    pollster::block_on(async {
        let mut events = 0;
        while let Some(_event) = generation.next_event().await.expect("a checked request runs") {
            events += 1;
        }
        assert_eq!(events, steps + 1, "one event per step and the final image");
    });
});

