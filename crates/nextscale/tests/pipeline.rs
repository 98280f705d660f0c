//! Generation pipeline behaviour on the tiny fixture model: events, previews, seeds,
//! batching, unconditional sampling and request validation.

mod common;

use nextscale::pipeline::{Event, GenerateRequest, Generation, PreviewMode};
use nextscale::{Error, SamplingOptions};

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
