//! The evaluator's image classifier: a small CNN trained on the real training split only,
//! whose penultimate features give Fréchet distance, KID and k-NN precision/recall of
//! generated samples (DESIGN §6). Never used to train a generator.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Int, Tensor};

use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm, Linear};
use crate::weights::ParamSource;

/// Channel widths of the four stages (32², 16², 8², 4²).
const WIDTHS: [usize; 4] = [32, 64, 128, 256];

/// GroupNorm groups in every block.
const GROUPS: usize = 8;

/// GroupNorm epsilon.
const NORM_EPS: f64 = 1e-5;

/// A residual block: `relu(norm2(conv2(relu(norm1(conv1(x))))) + skip(x))`, `skip` a 1×1
/// conv where the width changes.
#[derive(Module, Debug)]
struct ResBlock {
    conv1: Conv2d,
    norm1: GroupNorm,
    conv2: Conv2d,
    norm2: GroupNorm,
    skip: Option<Conv2d>,
}

impl ResBlock {
    /// Builds `{name}.conv1/norm1/conv2/norm2/skip.*`.
    fn new(src: &mut ParamSource, name: &str, c_in: usize, c: usize) -> Result<Self> {
        Ok(Self {
            conv1: Conv2d::new(src, &format!("{name}.conv1"), c_in, c, 3)?,
            norm1: GroupNorm::new(src, &format!("{name}.norm1"), c, GROUPS, NORM_EPS)?,
            conv2: Conv2d::new(src, &format!("{name}.conv2"), c, c, 3)?,
            norm2: GroupNorm::new(src, &format!("{name}.norm2"), c, GROUPS, NORM_EPS)?,
            skip: if c_in == c {
                None
            } else {
                Some(Conv2d::new(src, &format!("{name}.skip"), c_in, c, 1)?)
            },
        })
    }

    /// # Shapes
    /// - x: `[B, in, H, W]` → `[B, out, H, W]`
    fn forward(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        let h_bchw = relu(self.norm1.forward(self.conv1.forward(x_bchw.clone())));
        let h_bchw = self.norm2.forward(self.conv2.forward(h_bchw));
        let skip_bchw = match &self.skip {
            Some(skip) => skip.forward(x_bchw),
            None => x_bchw,
        };
        relu(h_bchw + skip_bchw)
    }
}

/// A small ResNet: one residual block per stage of [`WIDTHS`], average-pooled 2× between
/// stages, global average pooling to a `WIDTHS[3]`-dimensional feature, and a linear head.
#[derive(Module, Debug)]
pub struct Classifier {
    blocks: Vec<ResBlock>,
    head: Linear,
}

impl Classifier {
    /// Builds `block.{i}.*` and `head.*` for `num_classes` classes.
    pub fn new(src: &mut ParamSource, num_classes: usize) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut c_in = 3;
        for (stage, &c) in WIDTHS.iter().enumerate() {
            blocks.push(ResBlock::new(src, &format!("block.{stage}"), c_in, c)?);
            c_in = c;
        }
        let head = Linear::with_std(src, "head", c_in, num_classes, true, 0.01)?;
        Ok(Self { blocks, head })
    }

    /// Dimension of the penultimate features.
    pub fn feature_dim(&self) -> usize {
        WIDTHS[WIDTHS.len() - 1]
    }

    /// Penultimate features.
    ///
    /// # Shapes
    /// - img: `[B, 3, H, W]` in [-1, 1] → `[B, F]`
    pub fn features(&self, img_b3hw: Tensor<4>) -> Tensor<2> {
        let mut h_bchw = img_b3hw;
        for (i, block) in self.blocks.iter().enumerate() {
            if i > 0 {
                h_bchw = avg_pool2d(h_bchw, AvgPoolOptions::new([2, 2]));
            }
            h_bchw = block.forward(h_bchw);
        }
        let [b, c, h, w] = h_bchw.dims();
        h_bchw.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }

    /// Class logits from features.
    ///
    /// # Shapes
    /// - features: `[B, F]` → `[B, K]`
    pub fn logits(&self, features_bf: Tensor<2>) -> Tensor<2> {
        self.head.forward(features_bf)
    }

    /// Mean cross-entropy and accuracy (detached) of a labelled batch.
    ///
    /// # Shapes
    /// - img: `[B, 3, H, W]`, labels: `[B]` → loss `[1]`, accuracy `[1]`
    pub fn loss(&self, img_b3hw: Tensor<4>, labels_b: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
        let logits_bk = self.logits(self.features(img_b3hw));
        let b = logits_bk.dims()[0];
        let labels_b1 = labels_b.reshape([b, 1]);
        let loss = log_softmax(logits_bk.clone(), 1)
            .gather(1, labels_b1.clone())
            .mean()
            .neg();
        let accuracy = logits_bk.detach().argmax(1).equal(labels_b1).float().mean();
        (loss, accuracy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::CLASSIFIER_PREFIX;
    use burn::tensor::Device;

    #[test]
    fn shapes_and_initial_loss() {
        let device = Device::flex();
        let mut src = ParamSource::random(0, &device).with_prefix(CLASSIFIER_PREFIX);
        let net = Classifier::new(&mut src, 9).unwrap();
        let img = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(net.features(img.clone()).dims(), [2, 256]);
        let labels = Tensor::<1, Int>::zeros([2], &device);
        let (loss, _) = net.loss(img, labels);
        let loss: f32 = loss.into_scalar();
        assert!((loss - 9f32.ln()).abs() < 0.05, "{loss}");
    }
}
