//! An image a user gives (PNG bytes of any size) made into a model's input: decoded under
//! limits that bound its memory before any pixel is allocated, composited on white (as the
//! training images were), centre-cropped to a square and resized to the model's resolution
//! with a Catmull-Rom (bicubic) filter.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbaImage};

use crate::error::{Error, Result};

/// Largest width or height of an input image, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Most bytes a decoder may allocate for one input image (an 8192² RGBA image takes 256 MiB).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Decodes a PNG under [`MAX_IMAGE_SIDE`] and [`MAX_DECODE_BYTES`].
pub fn decode_png(bytes: &[u8]) -> Result<RgbaImage> {
    check_palette(bytes)?;
    let bad = |e: image::ImageError| Error::BadImage(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoded = reader.decode().map_err(bad)?.to_rgba8();
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(Error::BadImage("the image is empty".into()));
    }
    Ok(decoded)
}

/// Refuses a `PLTE` chunk that is not whole RGB entries, which png 0.18.1 accepts and then
/// panics on (image-rs/image-png#694, found by the `input_image` fuzz target).
fn check_palette(bytes: &[u8]) -> Result<()> {
    let mut at = 8; // the signature
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if &header[4..8] == b"PLTE" && !len.is_multiple_of(3) {
            return Err(Error::BadImage(format!(
                "the PLTE chunk has {len} bytes, not whole RGB entries"
            )));
        }
        // Length, type, data and CRC.
        at = at.saturating_add(12).saturating_add(len);
    }
    Ok(())
}

/// The image centre-cropped to a square and resized to `size × size` (1 ≤ `size` ≤
/// [`MAX_IMAGE_SIDE`]).
pub fn square(img: &RgbaImage, size: usize) -> Result<RgbaImage> {
    let side_out = u32::try_from(size)
        .ok()
        .filter(|s| (1..=MAX_IMAGE_SIDE).contains(s))
        .ok_or_else(|| Error::BadRequest(format!("image size {size} is out of range")))?;
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let crop = image::imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side);
    Ok(image::imageops::resize(
        &crop.to_image(),
        side_out,
        side_out,
        FilterType::CatmullRom,
    ))
}

/// The image composited on white and made opaque.
pub fn on_white(mut img: RgbaImage) -> RgbaImage {
    for px in img.pixels_mut() {
        let alpha = px[3] as f32 / 255.0;
        for c in 0..3 {
            px[c] = (px[c] as f32 * alpha + 255.0 * (1.0 - alpha)).round() as u8;
        }
        px[3] = 255;
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &RgbaImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn a_png_round_trips_and_squares() {
        let img = RgbaImage::from_fn(6, 4, |x, y| {
            image::Rgba([x as u8 * 40, y as u8 * 60, 7, 255])
        });
        let decoded = decode_png(&png(&img)).unwrap();
        assert_eq!(decoded, img);
        // The centre 4×4 at its own size is an exact crop.
        let sq = square(&decoded, 4).unwrap();
        assert_eq!(sq, image::imageops::crop_imm(&img, 1, 0, 4, 4).to_image());
    }

    #[test]
    fn transparent_pixels_become_white() {
        let img = RgbaImage::from_pixel(1, 2, image::Rgba([0, 100, 200, 0]));
        assert!(on_white(img).pixels().all(|p| p.0 == [255, 255, 255, 255]));
        let half = RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 128]));
        assert_eq!(on_white(half).get_pixel(0, 0).0, [127, 127, 127, 255]);
    }

    #[test]
    fn bad_images_are_typed_errors() {
        let code = |r: Result<RgbaImage>| r.unwrap_err().code();
        assert_eq!(code(decode_png(b"not a png")), "E_BAD_REQUEST");
        let bytes = png(&RgbaImage::from_pixel(3, 3, image::Rgba([1, 2, 3, 4])));
        assert_eq!(code(decode_png(&bytes[..bytes.len() / 2])), "E_BAD_REQUEST");
        // A header that claims a 100000 × 100000 image fails before its pixels are allocated.
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_png(&huge).unwrap_err();
        assert_eq!(err.code(), "E_BAD_REQUEST");
        assert!(err.to_string().contains("limit"), "{err}");
        assert_eq!(code(square(&RgbaImage::new(2, 2), 0)), "E_BAD_REQUEST");
        // The fuzz target's first find: a 7-byte palette, which png 0.18.1 panics on.
        let crash = include_bytes!("../../../fuzz/seeds/input_image/palette-7-bytes.png");
        let err = decode_png(crash).unwrap_err();
        assert!(err.to_string().contains("PLTE chunk has 7 bytes"), "{err}");
    }

    /// PNG's chunk CRC (CRC-32, polynomial 0xEDB88320).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
