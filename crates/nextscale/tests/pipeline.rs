//! Generation pipeline behaviour on the tiny fixture model: events, previews, seeds,
//! batching, unconditional sampling and request validation; and the Distilled-Decoding,
//! parallel-baseline and flow-map modes on a small random model with a student; HMAR's
//! seeds, mask schedules and refusals on the hmar-tiny-a fixture model.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use nextscale::pipeline::{Event, GenerateRequest, Generation, Mode, PreviewMode, images_of};
use nextscale::sampler::dd_noise;
use nextscale::{Error, Model, ModelConfig, SamplingOptions};
use pollster::block_on;

fn tokens_of(model: &nextscale::Model, request: GenerateRequest) -> Vec<Vec<Vec<u32>>> {
    let mut generation = Generation::new(model, request).unwrap();
    let mut per_scale = Vec::new();
    while let Some(event) = pollster::block_on(generation.next_event()).unwrap() {
        if let Event::Scale { tokens, .. } = event {
            per_scale.push(tokens);
        }
    }
    per_scale
}

fn request(labels: Vec<Option<usize>>, seed: u64) -> GenerateRequest {
    GenerateRequest {
        labels,
        seed,
        cfg: 2.0,
        sampling: SamplingOptions {
            top_k: 40,
            top_p: 0.9,
            more_smooth: false,
        },
        preview: PreviewMode::None,
        mode: Mode::Var,
        edit: None,
        mask_schedule: None,
        pass_events: false,
    }
}

#[test]
fn streams_one_event_per_scale_then_the_image() {
    let model = common::tiny_model();
    for (mode, side) in [(PreviewMode::Fast, 4), (PreviewMode::Full, 64)] {
        let mut req = request(vec![Some(1), Some(2)], 0);
        req.preview = mode;
        let mut generation = Generation::new(&model, req).unwrap();
        let mut indices = Vec::new();
        let mut done = None;
        while let Some(event) = pollster::block_on(generation.next_event()).unwrap() {
            match event {
                Event::Scale {
                    index,
                    of,
                    preview,
                    tokens,
                    ..
                } => {
                    assert_eq!(of, 4);
                    let pn = model.config.patch_nums[index];
                    assert!(
                        tokens
                            .iter()
                            .all(|t| t.len() == pn * pn && t.iter().all(|&v| v < 64))
                    );
                    let preview = preview.expect("preview requested");
                    assert_eq!(preview.len(), 2);
                    assert_eq!((preview[0].width, preview[0].height), (side, side));
                    indices.push(index);
                }
                Event::Pass { .. } => panic!("VAR has no passes"),
                Event::Done {
                    images, timings, ..
                } => done = Some((images, timings)),
            }
        }
        assert_eq!(indices, vec![0, 1, 2, 3]);
        let (images, timings) = done.expect("final event");
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].pixels.len(), 64 * 64 * 4);
        assert_eq!(timings.scale_ms.len(), 4);
        // Random weights still give a non-uniform image.
        let first = &images[0].pixels[..3];
        assert!(images[0].pixels.chunks(4).any(|p| &p[..3] != first));
        assert!(
            pollster::block_on(generation.next_event())
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn same_seed_same_tokens_and_batches_are_independent() {
    let model = common::tiny_model();
    let a = tokens_of(&model, request(vec![Some(3), Some(3)], 11));
    assert_eq!(a, tokens_of(&model, request(vec![Some(3), Some(3)], 11)));
    let single0 = tokens_of(&model, request(vec![Some(3)], 11));
    let single1 = tokens_of(&model, request(vec![Some(3)], 12));
    for si in 0..4 {
        assert_eq!(a[si][0], single0[si][0]);
        assert_eq!(a[si][1], single1[si][0]);
    }
    assert_ne!(a, tokens_of(&model, request(vec![Some(3), Some(3)], 99)));
}

#[test]
fn unconditional_and_unguided_requests_run() {
    let model = common::tiny_model();
    let mut req = request(vec![None, Some(0), None], 4);
    assert_eq!(tokens_of(&model, req.clone()).len(), 4);
    req.cfg = 0.0;
    req.sampling.more_smooth = true;
    assert_eq!(tokens_of(&model, req).len(), 4);
}

#[test]
fn bad_requests_are_typed_errors() {
    let model = common::tiny_model();
    let check = |req: GenerateRequest, code: &str| match Generation::new(&model, req) {
        Err(e) => assert_eq!(e.code(), code, "{e}"),
        Ok(_) => panic!("accepted a bad request"),
    };
    let mut r = request(vec![Some(1)], 0);
    r.cfg = f64::NAN;
    check(r, "E_BAD_REQUEST");
    let mut r = request(vec![Some(1)], 0);
    r.sampling.top_p = 1.5;
    check(r, "E_BAD_REQUEST");
    check(request(vec![Some(10)], 0), "E_BAD_REQUEST");
    check(request(vec![], 0), "E_BAD_REQUEST");
    check(request(vec![Some(1)], u64::MAX), "E_BAD_REQUEST");
    assert!(matches!(
        Generation::new(&model, request(vec![Some(10)], 0)),
        Err(Error::ClassOutOfRange {
            label: 10,
            num_classes: 10
        })
    ));
}

/// A small random model with a random student (loss_split_t 3, t_list [0, 3]).
fn dd_model() -> Model {
    Model::random(ModelConfig::emoji32_tiny(3), 11, &Device::flex()).unwrap()
}

fn final_pixels(model: &Model, request: GenerateRequest) -> (usize, Vec<u8>) {
    let mut generation = Generation::new(model, request).unwrap();
    let mut scale_events = 0;
    while let Some(event) = block_on(generation.next_event()).unwrap() {
        match event {
            Event::Scale { .. } => scale_events += 1,
            Event::Pass { .. } => panic!("pass events were not asked for"),
            Event::Done { images, .. } => {
                return (
                    scale_events,
                    images.into_iter().flat_map(|i| i.pixels).collect(),
                );
            }
        }
    }
    panic!("no final image");
}

#[test]
fn dd_modes_stream_one_event_per_pass_and_match_the_student_sampler() {
    let model = dd_model();
    let device = Device::flex();
    let config = &model.config;
    for (mode, t_list) in [(Mode::Dd1, vec![0]), (Mode::Dd2, vec![0, 3])] {
        let mut request = request(vec![Some(1), Some(2)], 40);
        request.mode = mode;
        let (events, pixels) = final_pixels(&model, request.clone());
        assert_eq!(events, t_list.len(), "{mode:?}");
        assert_eq!(
            final_pixels(&model, request).1,
            pixels,
            "{mode:?} is deterministic"
        );
        // The same noise through `DdModel::sample` (the fixture-checked path).
        let (l, cv) = (config.seq_len(), config.cvae);
        let noise: Vec<f32> = (40..42).flat_map(|s| dd_noise(s, l, cv)).collect();
        let noise = Tensor::<3>::from_data(TensorData::new(noise, [2, l, cv]), &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        let student = model.dd.as_ref().unwrap();
        let seq = block_on(student.sample(&model.vae, labels, noise, &t_list)).unwrap();
        let direct = block_on(images_of(student.sequence_to_image(&model.vae, seq))).unwrap();
        let direct: Vec<u8> = direct.into_iter().flat_map(|i| i.pixels).collect();
        assert_eq!(direct, pixels, "{mode:?}");
    }
}

#[test]
fn parallel_baseline_is_one_pass_and_dd_needs_a_student() {
    let model = dd_model();
    let mut request = request(vec![Some(0)], 3);
    request.mode = Mode::Parallel;
    let (events, pixels) = final_pixels(&model, request.clone());
    assert_eq!(events, 1);
    assert_eq!(pixels.len(), 32 * 32 * 4);

    let teacher_only = Model::random(ModelConfig::emoji32(3), 1, &Device::flex()).unwrap();
    request.mode = Mode::Dd1;
    let err = Generation::new(&teacher_only, request).err().unwrap();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    assert_eq!(Mode::parse("dd2").unwrap(), Mode::Dd2);
    assert!(Mode::parse("dd3").is_err());
}

#[test]
fn flow_map_teacher_is_deterministic_and_ignores_the_sampling_stream() {
    let model = dd_model();
    let run = |seed| {
        let generation = Generation::new(&model, request(vec![Some(2), Some(0)], seed)).unwrap();
        let generation = block_on(generation.with_flow(16)).unwrap();
        match block_on(generation.run_to_end()).unwrap() {
            Event::Done { images, .. } => images
                .into_iter()
                .flat_map(|i| i.pixels)
                .collect::<Vec<u8>>(),
            Event::Scale { .. } | Event::Pass { .. } => unreachable!(),
        }
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
    // Image i's noise is `dd_noise(seed + i)`, the student's noise for that seed.
    let generation = Generation::new(&model, request(vec![Some(2), Some(0)], 9)).unwrap();
    let generation = block_on(generation.with_flow(16)).unwrap();
    let config = &model.config;
    let noise = generation.flow_noise().unwrap();
    assert_eq!(noise[1], dd_noise(10, config.seq_len(), config.cvae));
}

#[test]
fn students_of_every_loss_split_generate() {
    // All scales continuous, the usual split, and all scales as tokens.
    for split in [0, 3, 6] {
        let mut config = ModelConfig::emoji32_tiny(3);
        if let Some(dd) = config.dd.as_mut() {
            dd.loss_split_t = split;
        }
        let model = Model::random(config, 2, &Device::flex()).unwrap();
        for mode in [Mode::Dd1, Mode::Dd2] {
            let mut request = request(vec![Some(1)], 4);
            request.mode = mode;
            let (events, pixels) = final_pixels(&model, request);
            assert_eq!(events, mode.dd_steps(), "split {split}, {mode:?}");
            assert_eq!(pixels.len(), 32 * 32 * 4, "split {split}, {mode:?}");
        }
    }
}

/// The hmar-tiny-a fixture model (its config carries the fixture's mask schedule).
fn hmar_model() -> Model {
    let (config, bytes) = common::fixture_parts("hmar-tiny-a");
    let file = nextscale::weights::WeightFile::parse(&bytes).unwrap();
    Model::from_weights(config, &file, &Device::flex()).unwrap()
}

#[test]
fn hmar_samples_by_seed_and_its_schedule_changes_the_tokens() {
    let model = hmar_model();
    assert_eq!(model.family(), "hmar");
    let a = tokens_of(&model, request(vec![Some(3), Some(3)], 11));
    assert_eq!(a.len(), 4, "one event per scale");
    assert_eq!(a, tokens_of(&model, request(vec![Some(3), Some(3)], 11)));
    // Batch rows are independent: image 1 of seed 11 is image 0 of seed 12.
    let single = tokens_of(&model, request(vec![Some(3)], 12));
    assert!((0..4).all(|si| a[si][1] == single[si][0]));
    // No refinement at all is another sampler: some scale comes out different.
    let mut plain = request(vec![Some(3), Some(3)], 11);
    plain.mask_schedule = Some(vec![vec![1], vec![4], vec![9], vec![16]]);
    assert_ne!(a, tokens_of(&model, plain));
}

#[test]
fn hmar_refuses_what_only_var_does_and_bad_schedules() {
    let model = hmar_model();
    let check = |req: GenerateRequest, needle: &str| match Generation::new(&model, req) {
        Err(e) => {
            assert_eq!(e.code(), "E_BAD_REQUEST", "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        Ok(_) => panic!("accepted a bad request"),
    };
    let mut r = request(vec![Some(1)], 0);
    r.mode = Mode::Parallel;
    check(r, "needs a VAR model");
    let mut r = request(vec![Some(1)], 0);
    r.sampling.more_smooth = true;
    check(r, "no Gumbel path");
    let mut r = request(vec![Some(1)], 0);
    r.mask_schedule = Some(vec![vec![1], vec![1, 2], vec![9], vec![16]]);
    check(r, "entry 1 [1, 2] must sum to the scale's 4 tokens");
    let mut r = request(vec![Some(1)], 0);
    r.mask_schedule = Some(vec![vec![1], vec![4]]);
    check(r, "2 entries for 4 scales");
    // A VAR model has no schedule to take.
    let var = common::tiny_model();
    let mut r = request(vec![Some(1)], 0);
    r.mask_schedule = Some(vec![vec![1], vec![4], vec![9], vec![16]]);
    match Generation::new(&var, r) {
        Err(e) => assert!(e.to_string().contains("needs an HMAR model"), "{e}"),
        Ok(_) => panic!("a VAR model took a mask schedule"),
    }
    let mut r = request(vec![Some(1)], 0);
    r.pass_events = true;
    match Generation::new(&var, r) {
        Err(e) => assert!(e.to_string().contains("need an HMAR model"), "{e}"),
        Ok(_) => panic!("a VAR model took pass events"),
    }
}

#[test]
fn hmar_pass_events_stream_every_pass_and_change_nothing() {
    let model = hmar_model();
    // The fixture's schedule: [[1], [1, 3], [1, 2, 6], [4, 5, 4, 3]].
    let schedule = model.config.hmar.as_ref().unwrap().mask_schedule.clone();
    let plain = request(vec![Some(3), Some(5)], 21);
    let mut with_passes = plain.clone();
    with_passes.pass_events = true;
    with_passes.preview = PreviewMode::Fast;
    let mut generation = Generation::new(&model, with_passes).unwrap();
    let (mut passes, mut scales, mut last) = (Vec::new(), Vec::new(), 0.0);
    while let Some(event) = pollster::block_on(generation.next_event()).unwrap() {
        match event {
            Event::Pass {
                scale,
                pass,
                passes: of,
                tokens,
                masked,
                preview,
                elapsed_ms,
            } => {
                assert_eq!(of, schedule[scale].len());
                // The positions left masked: every later pass's share of the scale.
                let left: usize = schedule[scale][pass + 1..].iter().sum();
                let pn = model.config.patch_nums[scale];
                assert!(
                    masked
                        .iter()
                        .all(|m| m.len() == left && m.iter().all(|&i| i < pn * pn))
                );
                assert!(tokens.iter().all(|t| t.len() == pn * pn));
                assert_eq!(preview.expect("previews asked").len(), 2);
                assert!(elapsed_ms >= last);
                last = elapsed_ms;
                passes.push((scale, pass));
            }
            Event::Scale {
                index,
                tokens,
                elapsed_ms,
                ..
            } => {
                assert!(elapsed_ms >= last);
                last = elapsed_ms;
                scales.push(tokens);
                // Every pass of the scale but its last came before.
                let expected: Vec<(usize, usize)> =
                    (0..schedule[index].len() - 1).map(|p| (index, p)).collect();
                let got: Vec<(usize, usize)> = passes
                    .iter()
                    .copied()
                    .filter(|&(s, _)| s == index)
                    .collect();
                assert_eq!(got, expected, "scale {index}");
            }
            Event::Done { timings, .. } => assert_eq!(timings.scale_ms.len(), 4),
        }
    }
    // Scale 0 has no passes; scales 1, 2 and 3 have 2, 3 and 4 (the last ends the scale).
    assert_eq!(passes.len(), 1 + 2 + 3);
    assert_eq!(
        scales,
        tokens_of(&model, plain),
        "the same tokens without pass events"
    );
}

/// A model conditioned on subclasses generates each image of a class as the same weights
/// do under the subclass its seed draws: two classes over three class-embedding rows (class
/// 0: row 0; class 1: rows 1 and 2, drawn 1 : 3), against the same random weights read as
/// three plain classes, in the teacher's and the student's pipelines.
#[test]
fn subclass_models_generate_under_the_row_each_seed_draws() {
    let plain = dd_model();
    let mut config = ModelConfig::emoji32_tiny(2);
    config.subclasses = vec![
        subclass("a", 0, 1.0),
        subclass("b", 1, 0.25),
        subclass("c", 1, 0.75),
    ];
    let subclassed = Model::random(config, 11, &Device::flex()).unwrap();
    let mut rows_seen = [0; 3];
    for seed in 0..6 {
        for class in [0, 1] {
            let row = request(vec![Some(class)], seed)
                .conditions(&subclassed.config)
                .unwrap()[0] as usize;
            rows_seen[row] += 1;
            for mode in [Mode::Var, Mode::Dd1] {
                let mut under_class = request(vec![Some(class)], seed);
                under_class.mode = mode;
                let mut under_row = request(vec![Some(row)], seed);
                under_row.mode = mode;
                assert_eq!(
                    final_pixels(&subclassed, under_class).1,
                    final_pixels(&plain, under_row).1,
                    "class {class}, seed {seed}, {mode:?}"
                );
            }
        }
    }
    assert_eq!(rows_seen[0], 6, "class 0 has one subclass");
    assert!(rows_seen[1] > 0 && rows_seen[2] > 0, "{rows_seen:?}");
}

/// An edit in a model conditioned on subclasses is generated under a subclass drawn from
/// the posterior given the tokens it keeps, share × p(kept | row), on the image's condition
/// stream. The weights are var-tiny-a's with its class embedding scaled up, so that rows
/// differ in likelihood, read once as its ten classes and once as two classes, the first
/// with one subclass (row 0) and the second with nine (rows 1 to 9). The reference scores each row on the host (the plain model
/// teacher-forced over the input pyramid, log-softmax and the kept tokens summed here);
/// the edit must match the plain model's edit under the row drawn. The input is an image the
/// plain model generated under row 1, a small share, so the likelihood has to overturn the
/// prior on some seeds; a class with one subclass has nothing to score.
#[test]
fn edits_take_the_subclass_their_kept_tokens_make_likely() {
    use nextscale::edit::{Edit, EditBox, keep_per_scale};
    use nextscale::sampler::TokenRng;
    use nextscale::weights::WeightFile;

    let (config, bytes) = common::fixture_parts("var-tiny-a");
    let source = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let class_emb: Vec<u8> = (source.tensor("var.class_emb.weight").unwrap().data())
        .chunks_exact(4)
        .flat_map(|b| (30.0 * f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = (source.tensors().into_iter())
        .map(|(name, view)| match name.as_str() {
            "var.class_emb.weight" => {
                let shape = view.shape().to_vec();
                let scaled =
                    safetensors::tensor::TensorView::new(view.dtype(), shape, &class_emb).unwrap();
                (name, scaled)
            }
            _ => (name, view),
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let file = WeightFile::parse(&bytes).unwrap();
    let device = Device::flex();
    let plain = Model::from_weights(config.clone(), &file, &device).unwrap();
    let mut split = config;
    split.num_classes = 2;
    split.class_names.clear();
    // Class 0: row 0 alone; class 1: rows 1..=9, row 1 with the smallest share.
    split.subclasses = std::iter::once(subclass("r0", 0, 1.0))
        .chain((1..10).map(|r| subclass(&format!("r{r}"), 1, if r == 1 { 0.02 } else { 1.0 })))
        .collect();
    let subclassed = Model::from_weights(split, &file, &device).unwrap();
    let patch_nums = plain.config.patch_nums.clone();
    let big = *patch_nums.last().unwrap();
    let input: Vec<Vec<u32>> = tokens_of(&plain, request(vec![Some(1)], 3))
        .into_iter()
        .map(|mut scale| scale.remove(0))
        .collect();
    let keep = keep_per_scale(
        &EditBox::new([0.25, 0.25, 0.75, 0.75])
            .unwrap()
            .keep_mask(big, false),
        &patch_nums,
    );
    let edit = Edit {
        input_idx: vec![input.clone()],
        keep: keep.clone(),
    };
    let idx_bl: Vec<Tensor<2, Int>> = (input.iter())
        .map(|t| {
            let values: Vec<i64> = t.iter().map(|&v| v as i64).collect();
            Tensor::from_data(TensorData::new(values, [1, t.len()]), &device)
        })
        .collect();
    let v = plain.config.vocab_size;
    let x = plain.vae.quantize.idx_to_var_input(&idx_bl);
    let log_lik: Vec<f64> = (1..10)
        .map(|row| {
            let x = x.clone();
            let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![row], [1]), &device);
            let var = plain.var("test").unwrap();
            let logits = var
                .forward(labels, x)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            (input.iter().flatten().zip(keep.iter().flatten()))
                .zip(logits.chunks_exact(v))
                .filter(|((_, kept), _)| **kept)
                .map(|((&target, _), row)| {
                    let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let z: f64 = row.iter().map(|&x| (x as f64 - top).exp()).sum();
                    row[target as usize] as f64 - top - z.ln()
                })
                .sum()
        })
        .collect();
    let top = log_lik.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let posterior: Vec<f64> = (1..10)
        .zip(&log_lik)
        .map(|(row, l)| if row == 1 { 0.02 } else { 1.0 } * (l - top).exp())
        .collect();
    let mut overturned = 0;
    for seed in 0..8 {
        let row = 1 + TokenRng::for_condition(seed).categorical(&posterior);
        let by_share = request(vec![Some(1)], seed)
            .conditions(&subclassed.config)
            .unwrap()[0];
        overturned += usize::from(row as i64 != by_share);
        let mut under_class = request(vec![Some(1)], seed);
        under_class.edit = Some(edit.clone());
        let mut under_row = request(vec![Some(row)], seed);
        under_row.edit = Some(edit.clone());
        assert_eq!(
            final_pixels(&subclassed, under_class).1,
            final_pixels(&plain, under_row).1,
            "seed {seed}: row {row} (log-likelihoods {log_lik:.2?})"
        );
        let mut single = request(vec![Some(0)], seed);
        single.edit = Some(edit.clone());
        let mut row0 = request(vec![Some(0)], seed);
        row0.edit = Some(edit.clone());
        assert_eq!(
            final_pixels(&subclassed, single).1,
            final_pixels(&plain, row0).1
        );
    }
    assert!(
        overturned > 0,
        "the kept tokens never changed the draw (log-likelihoods {log_lik:.2?})"
    );
}

fn subclass(name: &str, class: usize, share: f64) -> nextscale::config::Subclass {
    nextscale::config::Subclass {
        name: name.into(),
        class,
        share,
    }
}

/// Over 40,000 seeds each subclass is drawn as often as its share of its class says
/// (within 4.5 standard deviations of the binomial count), never under another class, a
/// zero share never; the null row follows the subclasses, without subclasses a class is its
/// own row, and a label past the classes is a typed error.
#[test]
fn conditions_draw_subclasses_by_their_shares() {
    let mut config = ModelConfig::emoji32_tiny(2);
    let rows = |config: &ModelConfig, label: Option<usize>| {
        request(vec![label], 5).conditions(config).unwrap()[0]
    };
    assert_eq!(
        (
            config.cond_classes(),
            rows(&config, Some(1)),
            rows(&config, None)
        ),
        (2, 1, 2)
    );
    config.subclasses = vec![
        subclass("a", 0, 2.0),
        subclass("b", 1, 1.0),
        subclass("c", 0, 0.0),
        subclass("d", 0, 6.0),
        subclass("e", 1, 3.0),
    ];
    config.validate().unwrap();
    assert_eq!((config.cond_classes(), rows(&config, None)), (5, 5));
    assert!(matches!(
        request(vec![Some(2)], 5).conditions(&config),
        Err(Error::ClassOutOfRange { label: 2, .. })
    ));
    let n = 40_000;
    for (class, expect) in [
        (0, [0.25, 0.0, 0.0, 0.75, 0.0]),
        (1, [0.0, 0.25, 0.0, 0.0, 0.75]),
    ] {
        let mut counts = [0usize; 5];
        for row in GenerateRequest::new(Some(class), n, 0)
            .conditions(&config)
            .unwrap()
        {
            counts[row as usize] += 1;
        }
        for (row, (&count, p)) in counts.iter().zip(expect).enumerate() {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            let off = (count as f64 - n as f64 * p).abs();
            assert!(
                off <= 4.5 * sd,
                "class {class}, row {row}: {count} of {n}, share {p}"
            );
        }
    }
}
