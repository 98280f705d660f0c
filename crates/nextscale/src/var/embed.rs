//! The embeddings every next-scale transformer (VAR, HMAR) shares: the class embedding
//! with its null class, `pos_start`, `pos_1LC` and `lvl_embed`, under the official names.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::Embedding;
use crate::weights::{Init, ParamSource};

/// Class, start, level and position embeddings of a scale schedule.
#[derive(Module, Debug)]
pub struct ScaleEmbed {
    class_emb: Embedding,
    pos_start: Param<Tensor<3>>,
    pos_1lc: Param<Tensor<3>>,
    lvl_embed: Embedding,
    patch_nums: Vec<usize>,
    num_classes: usize,
}

impl ScaleEmbed {
    /// Builds `class_emb`, `pos_start`, `pos_1LC` and `lvl_embed` (in that order, which a
    /// seeded random init follows).
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let c = config.embed_dim;
        let init_std = (1.0 / c as f64 / 3.0).sqrt();
        let first_l = config.patch_nums[0] * config.patch_nums[0];
        let l = config.seq_len();
        let class_emb = Embedding::new(src, "class_emb", config.cond_classes() + 1, c, init_std)?;
        let pos_start = src.param("pos_start", [1, first_l, c], Init::Normal(init_std))?;
        let pos_1lc = src.param("pos_1LC", [1, l, c], Init::Normal(init_std))?;
        let lvl_embed = Embedding::new(src, "lvl_embed", config.patch_nums.len(), c, init_std)?;
        Ok(Self {
            class_emb,
            pos_start,
            pos_1lc,
            lvl_embed,
            patch_nums: config.patch_nums.clone(),
            num_classes: config.cond_classes(),
        })
    }

    /// Token offsets `(begin, end)` of each scale in the flattened sequence.
    pub fn begin_ends(&self) -> Vec<(usize, usize)> {
        let mut cur = 0;
        self.patch_nums
            .iter()
            .map(|pn| {
                let be = (cur, cur + pn * pn);
                cur += pn * pn;
                be
            })
            .collect()
    }

    /// The class condition; label [`ModelConfig::cond_classes`] is the null class.
    ///
    /// # Shapes
    /// - labels: `[B]` → `[B, D]`
    pub fn cond(&self, labels_b: Tensor<1, Int>) -> Tensor<2> {
        self.class_emb.forward(labels_b)
    }

    /// Index of the null (unconditional) class.
    pub fn null_class(&self) -> usize {
        self.num_classes
    }

    /// Level plus position embedding of the tokens `begin..end`.
    ///
    /// # Shapes
    /// - returns `[1, end − begin, C]`
    pub fn lvl_pos(&self, begin: usize, end: usize) -> Tensor<3> {
        let device = self.pos_1lc.val().device();
        let lvl: Vec<i64> = self
            .begin_ends()
            .iter()
            .enumerate()
            .flat_map(|(si, (b, e))| std::iter::repeat_n(si as i64, e - b))
            .skip(begin)
            .take(end - begin)
            .collect();
        let lvl_l = Tensor::<1, Int>::from_data(TensorData::new(lvl, [end - begin]), &device);
        let lvl_1lc = self.lvl_embed.forward(lvl_l).unsqueeze_dim::<3>(0);
        lvl_1lc + self.pos_1lc.val().narrow(1, begin, end - begin)
    }

    /// The first scale's input: class embedding + `pos_start` + level/position embedding.
    ///
    /// # Shapes
    /// - cond: `[B, D]` → `[B, pn₀², C]`
    pub fn sos(&self, cond_bd: Tensor<2>) -> Tensor<3> {
        let [b, c] = cond_bd.dims();
        let first_l = self.patch_nums[0] * self.patch_nums[0];
        cond_bd.reshape([b, 1, c]).expand([b, first_l, c])
            + self.pos_start.val()
            + self.lvl_pos(0, first_l)
    }
}
