//! The engine inside wasm: official parity of the `var-tiny-a` and `edit-tiny-a` fixtures on
//! the flex CPU backend (node) and on WebGPU (browser), the host matrix kernels, and the
//! JS-facing `Engine` end to end.
//!
//! Run with `wasm-pack test --node` and `wasm-pack test --headless --chrome -- webgpu` (see
//! `scripts/test.sh`; Chrome gets `--enable-unsafe-webgpu` from `webdriver.json`).
//! Tolerances: tokens exact; floats ≤ 1e-4 on the CPU (the fixture's float noise is below
//! 3.5e-5) and ≤ 1e-3 on WebGPU (measured 1.5e-5 on SwiftShader; the bound leaves room for
//! GPUs whose kernels sum f32 in another order or contract to FMA).
//!
//! wasm only: the native build of the workspace (`scripts/test.sh`) compiles it to nothing.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use nextscale::config::DdConfig;
use nextscale::dd::DdModel;
use nextscale::parity::{EditTask, run_edit_cases, run_hmar_cases, run_var_cases};
use nextscale::train::state_dict;
use nextscale::weights::{ParamSource, WeightFile};
use nextscale::{Model, ModelConfig, Sampling};
use nextscale_wasm::Engine;
use nextscale_wasm::backend::{self, BackendRequest};
use nextscale_wasm::bytes::ModelBytes;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

const CONFIG_JSON: &str = include_str!("../../../../shared/fixtures/var-tiny-a/config.json");
static WEIGHTS: &[u8] =
    include_bytes!("../../../../shared/fixtures/var-tiny-a/weights.safetensors");
static CASES: &[u8] = include_bytes!("../../../../shared/fixtures/var-tiny-a/cases.safetensors");
/// The zero-shot edit fixture: var-tiny-a's weights, its own tasks and cases.
const EDIT_CONFIG_JSON: &str = include_str!("../../../../shared/fixtures/edit-tiny-a/config.json");
static EDIT_CASES: &[u8] =
    include_bytes!("../../../../shared/fixtures/edit-tiny-a/cases.safetensors");

/// The HMAR fixture (var-tiny-a's VQ-VAE, an HMAR transformer, its own cases).
const HMAR_CONFIG_JSON: &str = include_str!("../../../../shared/fixtures/hmar-tiny-a/config.json");
static HMAR_WEIGHTS: &[u8] =
    include_bytes!("../../../../shared/fixtures/hmar-tiny-a/weights.safetensors");
static HMAR_CASES: &[u8] =
    include_bytes!("../../../../shared/fixtures/hmar-tiny-a/cases.safetensors");

/// Float tolerance of the CPU backend.
const CPU_TOL: f64 = 1e-4;
/// Float tolerance of WebGPU.
const WEBGPU_TOL: f64 = 1e-3;

/// The var-tiny-a cases, the edit-tiny-a edits and the hmar-tiny-a cases (on the same
/// device), tokens and masked sets exact and floats within `float_tol`.
async fn assert_parity(model: &Model, float_tol: f64) {
    let cases = WeightFile::parse(CASES).expect("cases parse");
    let mut results = run_var_cases(model, &cases).await.expect("cases run");
    assert!(results.len() > 10, "only {} cases ran", results.len());
    let edit_cases = WeightFile::parse(EDIT_CASES).expect("edit cases parse");
    let tasks = EditTask::from_fixture_json(EDIT_CONFIG_JSON).expect("edit tasks");
    let edits = run_edit_cases(model, &edit_cases, &tasks)
        .await
        .expect("edit cases run");
    assert!(edits.len() > 60, "only {} edit cases ran", edits.len());
    results.extend(edits);
    let hmar_config = ModelConfig::from_fixture_json(HMAR_CONFIG_JSON).expect("hmar config");
    let hmar_weights = WeightFile::parse(HMAR_WEIGHTS).expect("hmar weights");
    let hmar = Model::from_weights(hmar_config, &hmar_weights, model.device()).expect("hmar");
    let hmar_cases = WeightFile::parse(HMAR_CASES).expect("hmar cases parse");
    let hmar_results = run_hmar_cases(&hmar, &hmar_cases, HMAR_CONFIG_JSON)
        .await
        .expect("hmar cases run");
    assert!(
        hmar_results.len() > 100,
        "only {} HMAR cases ran",
        hmar_results.len()
    );
    results.extend(hmar_results);
    let worst = results
        .iter()
        .filter(|r| !r.exact)
        .map(|r| r.error)
        .fold(0.0, f64::max);
    wasm_bindgen_test::console_log!(
        "{} cases, max float error {worst:.2e} (bound {float_tol:.0e})",
        results.len()
    );
    for r in &results {
        let tol = if r.exact { 0.0 } else { float_tol };
        assert!(
            r.error.is_finite() && r.error <= tol,
            "{}: error {} > {tol}",
            r.name,
            r.error
        );
    }
}

fn fixture_model(device: &burn::tensor::Device) -> Model {
    let config = ModelConfig::from_fixture_json(CONFIG_JSON).expect("fixture config");
    let weights = WeightFile::parse(WEIGHTS).expect("fixture weights");
    Model::from_weights(config, &weights, device).expect("fixture model")
}

fn in_browser() -> bool {
    Reflect::has(&js_sys::global(), &"document".into()).unwrap_or(false)
}

#[wasm_bindgen_test]
async fn cpu_matches_the_official_fixture() {
    let (device, report) = backend::select(BackendRequest::Cpu).await.expect("cpu");
    assert_eq!(report.backend, "cpu");
    assert_parity(&fixture_model(&device), CPU_TOL).await;
}

/// In the browser (launched with `--enable-unsafe-webgpu`) WebGPU must be there and match
/// the fixture; in node there is no WebGPU and asking for it is a typed error. `auto` takes
/// WebGPU only on a hardware adapter.
#[wasm_bindgen_test]
async fn webgpu_matches_the_official_fixture_or_is_reported_unavailable() {
    let software = match backend::select(BackendRequest::WebGpu).await {
        Ok((device, report)) => {
            assert_eq!(report.backend, "webgpu");
            let adapter = report.adapter.expect("adapter info");
            assert_parity(&fixture_model(&device), WEBGPU_TOL).await;
            adapter.is_fallback_adapter
        }
        Err(e) => {
            assert_eq!(e.code(), "E_WEBGPU_UNAVAILABLE", "{}", e.message());
            assert!(!in_browser(), "no WebGPU in the browser: {}", e.message());
            true
        }
    };
    // `auto` never fails for want of WebGPU, and passes over a software fallback adapter
    // (headless Chromium's SwiftShader is one).
    let (_, report) = backend::select(BackendRequest::Auto).await.expect("auto");
    assert_eq!(report.backend, if software { "cpu" } else { "webgpu" });
    if software && in_browser() {
        assert!(
            report.reason.contains("software fallback"),
            "{}",
            report.reason
        );
    }
}

/// The fixture as a model file: its tensors with the config in the metadata.
fn model_file() -> Vec<u8> {
    model_file_with(None)
}

/// The fixture model with `sampling` as its recommended sampling.
fn model_file_with(sampling: Option<Sampling>) -> Vec<u8> {
    let mut config = ModelConfig::from_fixture_json(CONFIG_JSON).expect("fixture config");
    config.sampling = sampling;
    let tensors = safetensors::SafeTensors::deserialize(WEIGHTS).expect("fixture weights");
    let metadata = HashMap::from([(
        nextscale::config::CONFIG_METADATA_KEY.to_string(),
        config.to_json(),
    )]);
    safetensors::serialize(tensors.tensors(), Some(metadata)).expect("serialize")
}

/// The fixture plus a random Distilled-Decoding student (`loss_split_t` 2, `t_list` [0, 2]).
fn model_file_with_student() -> Vec<u8> {
    let mut config = ModelConfig::from_fixture_json(CONFIG_JSON).expect("fixture config");
    config.dd = Some(DdConfig {
        loss_split_t: 2,
        t_list: vec![0, 2],
    });
    let device = burn::tensor::Device::flex();
    let mut src = ParamSource::random(5, &device).with_prefix("dd.");
    let student = DdModel::new(&mut src, &config, 2).expect("student");
    let student = state_dict(&student, src.names()).expect("state");
    let teacher = safetensors::SafeTensors::deserialize(WEIGHTS).expect("fixture weights");
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = teacher
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    for (name, (shape, values)) in student {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name, safetensors::Dtype::F32, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes);
            (name.clone(), view.expect("view"))
        })
        .collect();
    let metadata = HashMap::from([(
        nextscale::config::CONFIG_METADATA_KEY.to_string(),
        config.to_json(),
    )]);
    safetensors::serialize(views, Some(metadata)).expect("serialize")
}

/// A file's bytes streamed into wasm memory in chunks, as a download arrives.
fn streamed(bytes: &[u8], announced: Option<usize>) -> ModelBytes {
    let mut into = ModelBytes::new(announced.map(|n| n as f64)).expect("model bytes");
    for chunk in bytes.chunks(4093) {
        into.push(&Uint8Array::from(chunk)).expect("push");
    }
    into
}

/// The streamed bytes' SHA-256 is FIPS 180-4's: its examples, and a message over many
/// chunks against the same bytes pushed at once.
#[wasm_bindgen_test]
fn streamed_bytes_hash_as_sha256() {
    assert_eq!(
        streamed(b"", None).sha256(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        streamed(b"abc", None).sha256(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let long: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut whole = ModelBytes::new(None).unwrap();
    whole.push(&Uint8Array::from(&long[..])).unwrap();
    assert_eq!(streamed(&long, Some(long.len())).sha256(), whole.sha256());
}

async fn engine(bytes: &[u8]) -> Result<Engine, JsValue> {
    Engine::create(streamed(bytes, Some(bytes.len())), "cpu".into()).await
}

fn code(error: &JsValue) -> String {
    Reflect::get(error, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

fn message(error: &JsValue) -> String {
    Reflect::get(error, &"message".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).expect("property")
}

/// Runs `generate` and collects the frames; `stop_after` frames makes the callback say stop.
async fn frames(
    engine: &Engine,
    options: JsValue,
    stop_after: Option<usize>,
) -> (Vec<JsValue>, Result<JsValue, JsValue>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    let on_frame = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |frame: JsValue| {
        sink.borrow_mut().push(frame);
        let go_on = stop_after.is_none_or(|n| sink.borrow().len() < n);
        Promise::resolve(&JsValue::from_bool(go_on)).into()
    });
    let function: &Function = on_frame.as_ref().unchecked_ref();
    let result = JsFuture::from(engine.generate(options, function.clone())).await;
    let frames = seen.borrow().clone();
    (frames, result)
}

fn options(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("json")
}

#[wasm_bindgen_test]
async fn engine_streams_a_frame_per_scale_then_stops_on_request() {
    let engine = engine(&model_file()).await.expect("engine");
    let info = engine.info().expect("info");
    assert_eq!(get(&info, "backend").as_string().as_deref(), Some("cpu"));
    assert_eq!(get(&info, "scales").as_f64(), Some(4.0));

    let request = r#"{"classLabel": 3, "seed": 7, "preview": "full"}"#;
    let (first, result) = frames(&engine, options(request), None).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(first.len(), 4, "one frame per scale, the last one final");
    let last = first.last().expect("a final frame");
    assert_eq!(get(last, "final").as_bool(), Some(true));
    assert_eq!(get(last, "width").as_f64(), Some(64.0));
    let pixels: Vec<u8> = Uint8Array::new(&get(last, "pixels")).to_vec();
    assert_eq!(pixels.len(), 64 * 64 * 4);
    assert!(pixels.iter().any(|&p| p != pixels[0]), "a uniform image");

    // Same seed, same image.
    let (again, _) = frames(&engine, options(request), None).await;
    let pixels_again: Vec<u8> =
        Uint8Array::new(&get(again.last().expect("final"), "pixels")).to_vec();
    assert_eq!(pixels, pixels_again);

    let (partial, aborted) = frames(&engine, options(request), Some(1)).await;
    assert_eq!(partial.len(), 1);
    assert_eq!(code(&aborted.expect_err("aborted")), "E_ABORTED");
}

#[wasm_bindgen_test]
async fn failures_are_errors_with_codes() {
    let mut corrupt = model_file();
    corrupt.truncate(corrupt.len() / 2);
    assert_eq!(
        code(&engine(&corrupt).await.err().expect("truncated")),
        "E_MODEL_FORMAT"
    );
    assert_eq!(
        code(&engine(b"nonsense").await.err().expect("junk")),
        "E_MODEL_FORMAT"
    );
    let bad_backend = Engine::create(streamed(&model_file(), None), "tpu".into()).await;
    assert_eq!(code(&bad_backend.err().expect("backend")), "E_BAD_REQUEST");

    // A download that ends before the size it announced, and one too large for wasm32.
    let file = model_file();
    let short = Engine::create(
        streamed(&file[..file.len() - 1], Some(file.len())),
        "cpu".into(),
    );
    let short = short.await.err().expect("short download");
    assert_eq!(code(&short), "E_MODEL_FORMAT");
    assert!(
        message(&short).contains("ended after"),
        "{}",
        message(&short)
    );
    let huge = ModelBytes::new(Some(5e9)).err().expect("a 5 GB file");
    assert_eq!(code(&huge), "E_BACKEND");
    assert!(message(&huge).contains("5.00 GB"), "{}", message(&huge));

    let engine = engine(&model_file()).await.expect("engine");
    for request in [
        r#"{"classLabel": 10}"#,
        r#"{"mode": "dd1"}"#,
        r#"{"mode": "teleport"}"#,
        r#"{"preview": "sometimes"}"#,
        r#"{"topP": 2}"#,
        r#"{"cfg": -1}"#,
        r#"{"colour": "blue"}"#,
    ] {
        let (seen, result) = frames(&engine, options(request), None).await;
        assert!(seen.is_empty(), "{request}");
        assert_eq!(
            code(&result.expect_err(request)),
            "E_BAD_REQUEST",
            "{request}"
        );
    }
}

/// The final image's pixels of a generation.
async fn final_pixels(engine: &Engine, request: &str) -> Vec<u8> {
    let (seen, result) = frames(engine, options(request), None).await;
    assert!(result.is_ok(), "{request}: {result:?}");
    Uint8Array::new(&get(seen.last().expect("a frame"), "pixels")).to_vec()
}

#[wasm_bindgen_test]
async fn the_model_default_sampling_fills_in_what_the_options_leave_out() {
    let sampling_of = |engine: &Engine| {
        let s = get(&engine.info().expect("info"), "sampling");
        let num = |k: &str| get(&s, k).as_f64().expect(k);
        (
            num("cfg"),
            num("topK"),
            num("topP"),
            get(&s, "fromModel").as_bool(),
        )
    };
    let official = engine(&model_file()).await.expect("engine");
    // The official sampling, its top-k 900 capped at the fixture's V (64).
    assert_eq!(sampling_of(&official), (1.5, 64.0, 0.96, Some(false)));

    // A model that recommends top-k 1 samples greedily: the seed no longer matters, until
    // the options ask for every token again.
    let greedy = Sampling {
        cfg: 2.0,
        top_k: 1,
        top_p: 0.0,
    };
    let engine = engine(&model_file_with(Some(greedy)))
        .await
        .expect("engine");
    assert_eq!(sampling_of(&engine), (2.0, 1.0, 0.0, Some(true)));
    let image = |seed: u64, extra: &str| {
        format!(r#"{{"classLabel": 3, "seed": {seed}, "preview": "none"{extra}}}"#)
    };
    assert_eq!(
        final_pixels(&engine, &image(1, "")).await,
        final_pixels(&engine, &image(2, "")).await
    );
    assert_ne!(
        final_pixels(&engine, &image(1, r#", "topK": 0"#)).await,
        final_pixels(&engine, &image(2, r#", "topK": 0"#)).await
    );
}

#[wasm_bindgen_test]
async fn student_modes_stream_one_frame_per_pass() {
    let engine = engine(&model_file_with_student()).await.expect("engine");
    let modes: Vec<String> = js_sys::Array::from(&get(&engine.info().expect("info"), "modes"))
        .iter()
        .filter_map(|m| m.as_string())
        .collect();
    assert_eq!(modes, ["var", "dd1", "dd2", "parallel"]);
    for (mode, expected) in [("dd1", 1), ("dd2", 2), ("parallel", 1), ("var", 4)] {
        let request = format!(r#"{{"classLabel": 2, "seed": 3, "mode": "{mode}"}}"#);
        let (seen, result) = frames(&engine, options(&request), None).await;
        assert!(result.is_ok(), "{mode}: {result:?}");
        assert_eq!(seen.len(), expected, "{mode}");
        let last = seen.last().expect("a final frame");
        assert_eq!(get(last, "final").as_bool(), Some(true), "{mode}");
        let pixels: Vec<u8> = Uint8Array::new(&get(last, "pixels")).to_vec();
        assert_eq!(pixels.len(), 64 * 64 * 4, "{mode}");
    }
}

/// A file written without the VQ-VAE encoder (`nextscale init/convert --no-encoder`) loads
/// and generates the same image as the full file.
#[wasm_bindgen_test]
async fn a_file_without_the_encoder_generates_the_same_images() {
    let full = engine(&model_file()).await.expect("full engine");
    let slim = engine_without_encoder().await;
    let request = r#"{"classLabel": 1, "seed": 4, "preview": "none"}"#;
    assert_eq!(
        final_pixels(&full, request).await,
        final_pixels(&slim, request).await
    );
}

/// The fixture model written without the VQ-VAE encoder (`--no-encoder`).
async fn engine_without_encoder() -> Engine {
    let mut config = ModelConfig::from_fixture_json(CONFIG_JSON).expect("fixture config");
    config.encoder = false;
    let tensors = safetensors::SafeTensors::deserialize(WEIGHTS).expect("fixture weights");
    let kept: Vec<_> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| {
            !name.starts_with("vae.encoder.") && !name.starts_with("vae.quant_conv.")
        })
        .collect();
    assert!(kept.len() < tensors.len());
    let metadata = HashMap::from([(
        nextscale::config::CONFIG_METADATA_KEY.to_string(),
        config.to_json(),
    )]);
    let slim = safetensors::serialize(kept, Some(metadata)).expect("serialize");
    engine(&slim).await.expect("slim engine")
}

/// `engine.edit` streams a frame per scale and keeps what the box says; the student modes,
/// a file without the encoder and malformed options are typed errors.
#[wasm_bindgen_test]
async fn engine_edits_an_image_and_refuses_what_it_cannot() {
    let engine = engine(&model_file()).await.expect("engine");
    // A 64×64 image of two halves.
    let image: Vec<u8> = (0..64 * 64)
        .flat_map(|i| {
            if i % 64 < 32 {
                [220, 40, 40, 255]
            } else {
                [30, 60, 200, 255]
            }
        })
        .collect();
    let edit_options = |extra: &str| {
        let edit = options(&format!(r#"{{"classLabel": 2, "seed": 1{extra}}}"#));
        Reflect::set(&edit, &"image".into(), &Uint8Array::from(&image[..])).unwrap();
        let mask = options(r#"{"box": [0.25, 0.25, 0.75, 0.75], "mode": "inpaint"}"#);
        Reflect::set(&edit, &"mask".into(), &mask).unwrap();
        edit
    };
    let (seen, result) = edit_frames(&engine, edit_options("")).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(seen.len(), 4, "a frame per scale");
    let tokens = |frame: &JsValue| js_sys::Uint32Array::new(&get(frame, "tokens")).to_vec();
    // The first scale keeps the input's token; the last keeps 12 of 16.
    assert_eq!(tokens(&seen[0]).len(), 1);
    assert_eq!(tokens(&seen[3]).len(), 16);

    for (extra, why) in [
        (r#", "mode": "dd1""#, "a student mode"),
        (r#", "topP": 3"#, "a bad top-p"),
    ] {
        let (seen, result) = edit_frames(&engine, edit_options(extra)).await;
        assert!(seen.is_empty(), "{why}");
        assert_eq!(code(&result.expect_err(why)), "E_BAD_REQUEST", "{why}");
    }
    let bad_box = edit_options("");
    Reflect::set(
        &bad_box,
        &"mask".into(),
        &options(r#"{"box": [0.5, 0, 0.2, 1], "mode": "inpaint"}"#),
    )
    .unwrap();
    let (_, result) = edit_frames(&engine, bad_box).await;
    assert_eq!(code(&result.expect_err("bad box")), "E_BAD_REQUEST");
    let small = edit_options("");
    Reflect::set(&small, &"image".into(), &Uint8Array::from(&image[..100])).unwrap();
    let (_, result) = edit_frames(&engine, small).await;
    assert_eq!(code(&result.expect_err("short image")), "E_BAD_REQUEST");
    let keep_all = edit_options("");
    let mask = Object::new();
    Reflect::set(
        &mask,
        &"pixels".into(),
        &Uint8Array::from(&vec![0u8; 64 * 64][..]),
    )
    .unwrap();
    Reflect::set(&keep_all, &"mask".into(), &mask).unwrap();
    let (_, result) = edit_frames(&engine, keep_all).await;
    assert!(message(&result.expect_err("keeps all")).contains("nothing to generate"));

    let slim = engine_without_encoder().await;
    let (_, result) = edit_frames(&slim, edit_options("")).await;
    let error = result.expect_err("no encoder");
    assert_eq!(code(&error), "E_BAD_REQUEST");
    assert!(
        message(&error).contains("no VQ-VAE encoder"),
        "{}",
        message(&error)
    );
}

/// Runs `edit` and collects the frames.
async fn edit_frames(
    engine: &Engine,
    options: JsValue,
) -> (Vec<JsValue>, Result<JsValue, JsValue>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    let on_frame = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |frame: JsValue| {
        sink.borrow_mut().push(frame);
        JsValue::TRUE
    });
    let function: &Function = on_frame.as_ref().unchecked_ref();
    let result = JsFuture::from(engine.edit(options, function.clone())).await;
    let frames = seen.borrow().clone();
    (frames, result)
}

/// The product in f64, for reference.
fn reference_product(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (0..k)
                .map(|d| a[r * k + d] as f64 * b[d * n + c] as f64)
                .sum();
        }
    }
    out
}

/// The wasm matrix kernels behind `cpu::linear` match the product in f64 on every edge, for
/// a row-major weight (SIMD128: banded up to 64 rows, packed above) and for one in panel
/// order (the engine's `Linear` weights: banded up to 32 rows, panel by panel above), on the
/// pool for large products: column tails past whole registers and panels, depths past a
/// block or a band's step, and chunks past the widest column chunk.
#[wasm_bindgen_test]
fn host_products_match_the_reference_on_every_edge() {
    use burn::tensor::{Tensor, TensorData};
    let device = burn::tensor::Device::flex();
    let value = |i: usize| ((i * 7919 + 13) % 997) as f32 / 997.0 - 0.5;
    for (m, n, k) in [
        (1, 4, 1),
        (2, 17, 5),
        (3, 33, 40),
        (16, 261, 19),
        (17, 16, 3),
        (40, 70, 600),
        (5, 3, 9),
        (64, 400, 300),
        (65, 70, 600),
        (67, 21, 9),
        (70, 300, 1030),
        (129, 36, 513),
        (32, 701, 70),
        (33, 13, 1025),
    ] {
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 5)).collect();
        let bias: Vec<f32> = (0..n).map(|i| value(i + 11)).collect();
        let want = reference_product(&a, &b, (m, n, k));
        // PyTorch's `[n, k]`, put in panel order as the loader does.
        let b_nk: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let panels = nextscale::cpu::linear::panels_from_out_in(&b_nk, (n, k));
        let x = Tensor::<2>::from_data(TensorData::new(a, [m, k]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(b, [k, n]), &device);
        let w_panels = Tensor::<2>::from_data(TensorData::new(panels, [k, n]), &device);
        let bias_n = Tensor::<1>::from_data(TensorData::new(bias.clone(), [n]), &device);
        let rows =
            nextscale::cpu::linear::linear_or(x.clone(), w, Some(bias_n.clone()), |_, _, _| {
                panic!("[{m},{k}]×[{k},{n}] did not take the host kernel")
            });
        let in_panels =
            nextscale::cpu::linear::panels_linear_or(x, w_panels, Some(bias_n), |_, _, _| {
                panic!("[{m},{k}]×[{k},{n}] in panels did not take the host kernel")
            });
        for (order, got) in [("rows", rows), ("panels", in_panels)] {
            let got = got.into_data().try_to_vec::<f32>().expect("f32 values");
            assert_eq!(got.len(), m * n);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let w = w + bias[i % n] as f64;
                assert!(
                    ((g as f64) - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{order}: [{m},{k}]×[{k},{n}] at {i}: {g} vs {w}"
                );
            }
        }
    }
}

/// The CPU engine (flex in wasm) loads `Linear` weights in panel order, and a layer's
/// forward, through the SIMD128 panel kernels, matches the same weight put back in row
/// order for the row-major kernels.
#[wasm_bindgen_test]
fn linear_weights_load_in_panel_order() {
    use burn::tensor::{Tensor, TensorData};
    use nextscale::cpu::linear::panels_linear_by_rows;
    use nextscale::nn::{Linear, WeightOrder};
    use nextscale::weights::ParamSource;
    let device = burn::tensor::Device::flex();
    let mut src = ParamSource::random(7, &device);
    let (m, d_in, d_out) = (40, 70, 29);
    let layer = Linear::new(&mut src, "layer", d_in, d_out, true).expect("a random layer");
    assert_eq!(layer.order, WeightOrder::Panels);
    let value = |i: usize| ((i * 7919 + 13) % 997) as f32 / 997.0 - 0.5;
    let x_vec: Vec<f32> = (0..m * d_in).map(value).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x_vec, [m, d_in]), &device);
    let bias = layer.bias.as_ref().map(|b| b.val());
    let want = panels_linear_by_rows(x.clone(), layer.weight.val(), bias);
    let got = layer.forward(x);
    let want = want.into_data().try_to_vec::<f32>().expect("f32 values");
    let got = got.into_data().try_to_vec::<f32>().expect("f32 values");
    assert_eq!(got.len(), m * d_out);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "at {i}: {g} vs {w}"
        );
    }
}

/// The decoder's large maps take Winograd F(4×4, 3×3) in wasm: 128-row convolutions, of a
/// plain input and of a 2× upsampled one, with widths that end mid-tile, match the
/// convolution in f64 to float rounding.
#[wasm_bindgen_test]
fn large_map_convolutions_match_the_reference() {
    use nextscale::cpu::conv::{Conv3x3Shape, conv3x3};
    let value = |i: usize| ((i * 7919 + 13) % 997) as f32 / 997.0 - 0.5;
    for (upsample, w) in [(false, 130), (true, 134)] {
        let (c_in, c_out, h) = (24, 5, 128);
        let shape = Conv3x3Shape {
            batch: 1,
            c_in,
            c_out,
            h,
            w,
            upsample,
        };
        let (in_h, in_w) = if upsample { (h / 2, w / 2) } else { (h, w) };
        let x: Vec<f32> = (0..c_in * in_h * in_w).map(value).collect();
        let weight: Vec<f32> = (0..c_out * c_in * 9).map(|i| value(i + 3)).collect();
        let bias: Vec<f32> = (0..c_out).map(|i| value(i + 7)).collect();
        let got = conv3x3(&x, &weight, &bias, shape);
        // Input value at (c, y, x) of the (upsampled) map, zero outside.
        let input = |c: usize, row: isize, col: isize| {
            if row < 0 || col < 0 || row >= h as isize || col >= w as isize {
                return 0.0;
            }
            let factor = if upsample { 2 } else { 1 };
            let (row, col) = (row as usize / factor, col as usize / factor);
            x[(c * in_h + row) * in_w + col]
        };
        let mut want = vec![0.0f64; c_out * h * w];
        for o in 0..c_out {
            for y in 0..h {
                for xo in 0..w {
                    let mut sum = bias[o] as f64;
                    for c in 0..c_in {
                        for tap in 0..9 {
                            let (dy, dx) = (tap / 3, tap % 3);
                            let v = input(c, (y + dy) as isize - 1, (xo + dx) as isize - 1);
                            sum += weight[(o * c_in + c) * 9 + tap] as f64 * v as f64;
                        }
                    }
                    want[(o * h + y) * w + xo] = sum;
                }
            }
        }
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - r).abs() <= 1e-5 * scale,
                "upsample {upsample}, {w} wide, at {i}: {g} vs {r}"
            );
        }
    }
}
