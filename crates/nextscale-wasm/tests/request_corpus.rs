//! Replays the committed inputs of the `generate_options` fuzz target
//! (`fuzz/seeds/generate_options/` and `fuzz/corpus/generate_options/`) through the engine's request parser natively: every
//! JSON input is refused with `E_BAD_REQUEST` or becomes a request that generates to the
//! end on the seed model, never a panic. Run natively: `scripts/test.sh` builds the whole
//! workspace with `--no-default-features`; alone, `cargo test -p nextscale-wasm
//! --no-default-features --test request_corpus`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use burn::tensor::Device;
use nextscale::Model;
use nextscale::pipeline::{Event, Generation};
use nextscale_wasm::request::GenerateOptions;

#[test]
fn generate_options_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let model_file = std::fs::read(root.join("seeds/models/tiny-dd.safetensors")).unwrap();
    let model = Model::from_safetensors(&model_file, &Device::flex()).unwrap();
    let mut paths: Vec<_> = ["seeds", "corpus"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir).join("generate_options")).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 9, "{} inputs", paths.len());
    let (mut refused, mut generated) = (0, 0);
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let request = GenerateOptions::from_value(value).and_then(|o| o.to_request(&model));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                assert_eq!(
                    e.code(),
                    "E_BAD_REQUEST",
                    "{}: {}",
                    path.display(),
                    e.message()
                );
                refused += 1;
                continue;
            }
        };
        let mut generation = Generation::new(&model, request).unwrap();
        let last = pollster::block_on(async {
            let mut last = None;
            while let Some(event) = generation.next_event().await.unwrap() {
                last = Some(event);
            }
            last
        });
        assert!(
            matches!(last, Some(Event::Done { .. })),
            "{}",
            path.display()
        );
        generated += 1;
    }
    // The hand-written seeds: seven requests over every mode, and two refused (a top-k
    // above V, an unknown key).
    assert!(
        generated >= 7 && refused >= 2,
        "{generated} generated, {refused} refused"
    );
}
