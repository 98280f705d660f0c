//! The evaluator's image classifier: a small CNN trained on the real training split only,
//! whose penultimate features give Fréchet distance, KID and k-NN precision/recall of
//! generated samples (DESIGN §6). Never used to train a generator.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Int, Tensor};

use crate::error::Result;
use crate::nn::{Conv2d, Linear};
use crate::weights::ParamSource;

/// Channel widths of the three stages.
const WIDTHS: [usize; 3] = [32, 64, 128];

/// Conv stages (two 3×3 convs each, average-pooled between stages), global average
/// pooling to a `WIDTHS[2]`-dimensional feature, and a linear head.
#[derive(Module, Debug)]
pub struct Classifier {
    convs: Vec<Conv2d>,
    head: Linear,
}

impl Classifier {
    /// Builds `conv.{i}.*` and `head.*` for `num_classes` classes.
    pub fn new(src: &mut ParamSource, num_classes: usize) -> Result<Self> {
        let mut convs = Vec::new();
        let mut c_in = 3;
        for (stage, &c) in WIDTHS.iter().enumerate() {
            convs.push(Conv2d::new(
                src,
                &format!("conv.{}", 2 * stage),
                c_in,
                c,
                3,
            )?);
            convs.push(Conv2d::new(
                src,
                &format!("conv.{}", 2 * stage + 1),
                c,
                c,
                3,
            )?);
            c_in = c;
        }
        let head = Linear::with_std(src, "head", c_in, num_classes, true, 0.01)?;
        Ok(Self { convs, head })
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
        for (i, conv) in self.convs.iter().enumerate() {
            h_bchw = relu(conv.forward(h_bchw));
            if i % 2 == 1 && i + 1 < self.convs.len() {
                h_bchw = avg_pool2d(h_bchw, AvgPoolOptions::new([2, 2]));
            }
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
        assert_eq!(net.features(img.clone()).dims(), [2, 128]);
        let labels = Tensor::<1, Int>::zeros([2], &device);
        let (loss, _) = net.loss(img, labels);
        let loss: f32 = loss.into_scalar();
        assert!((loss - 9f32.ln()).abs() < 0.05, "{loss}");
    }
}
