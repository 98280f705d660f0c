//! Zero-shot editing with a next-scale model (VAR's `demo_zero_shot_edit.ipynb`): encode an
//! image to its token pyramid, keep the tokens inside (out-painting) or outside
//! (in-painting, class editing) a region, and let the model generate the rest scale by
//! scale. Kept tokens are teacher-forced: they replace the sampled ones before the
//! embedding, so they enter f_hat and the KV cache like sampled ones.
//!
//! Which token positions are kept at each scale follows the official `get_edit_mask` and
//! `autoregressive_infer_cfg_with_mask` exactly (`shared/fixtures` README, edit-tiny-a):
//! - the box is rounded to the last scale's grid with Python's round-half-to-even, as
//!   half-open row and column ranges;
//! - the last scale keeps the mask itself; the first (1×1) keeps its token always; every
//!   other scale resamples the mask bilinearly (half-pixel centres, no antialiasing, the
//!   source coordinate in one f32 rounding, taps summed top-left, top-right, bottom-left,
//!   bottom-right) and keeps a position only where the result is strictly above 0.5, so
//!   exact ties are generated.

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::readback::read_i64;
use crate::vqvae::Vqvae;

/// A box in fractions of the image, `[y0, x0, y1, x1]` with `0 ≤ y0 < y1 ≤ 1` and the same
/// for x, as the official notebook gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EditBox {
    /// Top edge.
    pub y0: f64,
    /// Left edge.
    pub x0: f64,
    /// Bottom edge.
    pub y1: f64,
    /// Right edge.
    pub x1: f64,
}

impl EditBox {
    /// Checks the edges: finite, in [0, 1] and ordered.
    pub fn new([y0, x0, y1, x1]: [f64; 4]) -> Result<Self> {
        let ok = [y0, x0, y1, x1]
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            && y0 < y1
            && x0 < x1;
        if !ok {
            return Err(Error::BadRequest(format!(
                "edit box [{y0}, {x0}, {y1}, {x1}] must be [y0, x0, y1, x1] with 0 ≤ y0 < y1 ≤ 1 and 0 ≤ x0 < x1 ≤ 1"
            )));
        }
        Ok(Self { y0, x0, y1, x1 })
    }

    /// The keep mask at the last scale's `p × p` tokens (`get_edit_mask`): out-painting
    /// keeps the box, in-painting (and class editing) keeps everything but the box.
    pub fn keep_mask(&self, p: usize, outpaint: bool) -> Vec<f32> {
        let edge = |v: f64| (v * p as f64).round_ties_even() as usize;
        let (r0, r1, c0, c1) = (edge(self.y0), edge(self.y1), edge(self.x0), edge(self.x1));
        let mut mask = vec![0.0f32; p * p];
        for (i, row) in mask.chunks_exact_mut(p).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let inside = (r0..r1).contains(&i) && (c0..c1).contains(&j);
                *v = if inside == outpaint { 1.0 } else { 0.0 };
            }
        }
        mask
    }
}

/// The keep mask at the last scale from a per-pixel mask (`h × w`, values in [0, 1], 1 =
/// generate): each token keeps its input token when at most half of its pixels are to be
/// generated.
pub fn keep_from_pixels(generate: &[f32], (h, w): (usize, usize), p: usize) -> Result<Vec<f32>> {
    if generate.len() != h * w || h < p || w < p {
        return Err(Error::BadRequest(format!(
            "a pixel mask of {h}×{w} ({} values) cannot cover {p}×{p} tokens",
            generate.len()
        )));
    }
    let mut keep = vec![0.0f32; p * p];
    for (t, v) in keep.iter_mut().enumerate() {
        let (ti, tj) = (t / p, t % p);
        let rows = ti * h / p..(ti + 1) * h / p;
        let cols = tj * w / p..(tj + 1) * w / p;
        let count = (rows.len() * cols.len()) as f64;
        let sum: f64 = rows
            .flat_map(|i| cols.clone().map(move |j| generate[i * w + j] as f64))
            .sum();
        *v = if sum / count <= 0.5 { 1.0 } else { 0.0 };
    }
    Ok(keep)
}

/// Whether each position of every scale keeps its input token, from the keep mask at the
/// last scale (`keep_pp`, 1 = keep).
pub fn keep_per_scale(keep_pp: &[f32], patch_nums: &[usize]) -> Vec<Vec<bool>> {
    let big = *patch_nums.last().expect("a model has scales");
    patch_nums
        .iter()
        .map(|&p| {
            if p * p <= 3 {
                vec![true; p * p]
            } else if p == big {
                keep_pp.iter().map(|&v| v > 0.5).collect()
            } else {
                bilinear(keep_pp, big, p)
                    .into_iter()
                    .map(|v| v > 0.5)
                    .collect()
            }
        })
        .collect()
}

/// `F.interpolate(mode='bilinear', align_corners=False)` of a `big × big` map to `p × p`,
/// in f32 as PyTorch's CPU kernel computes it.
fn bilinear(src: &[f32], big: usize, p: usize) -> Vec<f32> {
    let s = big as f32 / p as f32;
    let taps = |d: usize| {
        // One rounding, as the reference: `s·(d + ½) − ½`, clamped at 0.
        let u = s.mul_add(d as f32 + 0.5, -0.5).max(0.0);
        let i0 = u.floor() as usize;
        let lambda = u - i0 as f32;
        (i0.min(big - 1), (i0 + 1).min(big - 1), 1.0 - lambda, lambda)
    };
    let mut out = vec![0.0f32; p * p];
    for (y, row) in out.chunks_exact_mut(p).enumerate() {
        let (y0, y1, wy0, wy1) = taps(y);
        for (x, v) in row.iter_mut().enumerate() {
            let (x0, x1, wx0, wx1) = taps(x);
            *v = wy0 * wx0 * src[y0 * big + x0]
                + wy0 * wx1 * src[y0 * big + x1]
                + wy1 * wx0 * src[y1 * big + x0]
                + wy1 * wx1 * src[y1 * big + x1];
        }
    }
    out
}

/// What an edit keeps: every image's input tokens at every scale, and which positions of
/// each scale keep them.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// `[image][scale]` → the input image's `pn²` token indices.
    pub input_idx: Vec<Vec<Vec<u32>>>,
    /// `[scale]` → whether each of the `pn²` positions keeps its input token.
    pub keep: Vec<Vec<bool>>,
}

impl Edit {
    /// Encodes `image_b3hw` (in [-1, 1], the model's resolution) with the VQ-VAE over the
    /// scales `patch_nums` and keeps the positions `keep_pp` (the last scale's mask, 1 =
    /// keep) marks. Needs the encoder ([`Error::NoEncoder`] otherwise).
    pub async fn encode(
        vae: &Vqvae,
        patch_nums: &[usize],
        image_b3hw: Tensor<4>,
        keep_pp: &[f32],
    ) -> Result<Self> {
        let big = *patch_nums.last().expect("a model has scales");
        if keep_pp.len() != big * big {
            return Err(Error::BadRequest(format!(
                "the keep mask has {} values; the last scale has {big}×{big} tokens",
                keep_pp.len()
            )));
        }
        let b = image_b3hw.dims()[0];
        let mut input_idx = vec![Vec::with_capacity(patch_nums.len()); b];
        for (idx_bl, &pn) in vae.img_to_idx(image_b3hw)?.into_iter().zip(patch_nums) {
            let values = read_i64(idx_bl).await?;
            for (image, row) in input_idx.iter_mut().zip(values.chunks_exact(pn * pn)) {
                image.push(row.iter().map(|&t| t as u32).collect());
            }
        }
        Ok(Self {
            input_idx,
            keep: keep_per_scale(keep_pp, patch_nums),
        })
    }

    /// Whether any position is generated (an edit that keeps everything changes nothing).
    pub fn generates_any(&self) -> bool {
        self.keep.iter().flatten().any(|&k| !k)
    }

    /// Positions generated at each scale.
    pub fn generated_per_scale(&self) -> Vec<usize> {
        self.keep
            .iter()
            .map(|k| k.iter().filter(|&&k| !k).count())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_round_half_to_even() {
        // 0.625·4 = 2.5 rounds to 2 and 0.375·4 = 1.5 to 2: an empty row range.
        let b = EditBox::new([0.375, 0.0, 0.625, 1.0]).unwrap();
        assert!(b.keep_mask(4, true).iter().all(|&v| v == 0.0));
        let centre = EditBox::new([0.25, 0.25, 0.75, 0.75]).unwrap();
        let inpaint = centre.keep_mask(4, false);
        assert_eq!(inpaint.iter().filter(|&&v| v == 0.0).count(), 4);
        assert_eq!(inpaint[5], 0.0);
        assert_eq!(inpaint[0], 1.0);
    }

    #[test]
    fn bad_boxes_are_errors() {
        for b in [
            [0.5, 0.0, 0.5, 1.0],
            [-0.1, 0.0, 0.5, 1.0],
            [0.0, 0.0, 1.5, 1.0],
            [0.0, f64::NAN, 0.5, 1.0],
        ] {
            assert!(
                matches!(EditBox::new(b), Err(Error::BadRequest(_))),
                "{b:?}"
            );
        }
    }

    #[test]
    fn the_top_half_at_three_is_a_tie_that_is_generated() {
        // classedit's box: the top half of a 4×4 grid is generated. At 3×3 the middle row
        // lands exactly on 0.5 and is generated too (the fixture's tie).
        let keep = EditBox::new([0.0, 0.0, 0.5, 1.0])
            .unwrap()
            .keep_mask(4, false);
        let scales = keep_per_scale(&keep, &[1, 2, 3, 4]);
        assert_eq!(scales[0], vec![true]);
        assert_eq!(
            scales[2],
            [false, false, false, false, false, false, true, true, true]
        );
        assert_eq!(scales[3][..8], [false; 8]);
        assert_eq!(scales[3][8..], [true; 8]);
    }

    #[test]
    fn pixel_masks_downsample_by_majority() {
        let mut generate = vec![0.0f32; 8 * 8];
        for i in 0..4 {
            for j in 0..8 {
                generate[i * 8 + j] = 1.0;
            }
        }
        let keep = keep_from_pixels(&generate, (8, 8), 4).unwrap();
        assert_eq!(keep[..8], [0.0; 8]);
        assert_eq!(keep[8..], [1.0; 8]);
        assert!(keep_from_pixels(&generate, (8, 7), 4).is_err());
    }
}
