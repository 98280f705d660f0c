//! The image decoder `nextscale edit` takes its `--image` and `--mask` through: decoding
//! under the core's limits, then the square crop, resize and compositing on white.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextscale::input_image::{decode_png, on_white, square};

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_png(data) else {
        return;
    };
    let img = on_white(square(&img, 8).expect("8 is a valid size"));
    assert_eq!(img.dimensions(), (8, 8));
    assert!(img.pixels().all(|p| p[3] == 255));
});
