//! The model config: the official VAR/VQ-VAE hyper-parameters plus what a shipped model
//! carries (class names, preview matrix, attribution, recommended sampling). Stored as JSON in the safetensors
//! `__metadata__` under the key [`CONFIG_METADATA_KEY`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Key of the JSON config in the safetensors `__metadata__`.
pub const CONFIG_METADATA_KEY: &str = "nextscale.config";

/// Official `ch_mult` of the VAR VQ-VAE.
pub const OFFICIAL_CH_MULT: [usize; 5] = [1, 1, 2, 2, 4];

/// Official scale schedule of VAR at 256 px.
pub const OFFICIAL_PATCH_NUMS: [usize; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16];

fn default_ch_mult() -> Vec<usize> {
    OFFICIAL_CH_MULT.to_vec()
}
fn default_num_res_blocks() -> usize {
    2
}
fn default_quant_resi() -> f64 {
    0.5
}
fn default_share_quant_resi() -> usize {
    4
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_norm_eps() -> f64 {
    1e-6
}
fn default_true() -> bool {
    true
}
fn is_true(value: &bool) -> bool {
    *value
}

/// A linear map Cvae → RGB applied to f_hat for nearly free previews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewMatrix {
    /// 3 rows (R, G, B) of Cvae weights.
    pub weight: Vec<Vec<f32>>,
    /// Per-channel offset, in the [-1, 1] image range.
    pub bias: [f32; 3],
}

/// Hyper-parameters of a VQ-VAE + VAR model pair, named as in the official code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Codebook size V.
    #[serde(rename = "V")]
    pub vocab_size: usize,
    /// Latent channels Cvae.
    #[serde(rename = "Cvae")]
    pub cvae: usize,
    /// Base channel width of the VQ-VAE CNN.
    pub ch: usize,
    /// Channel multiplier per resolution level of the VQ-VAE.
    #[serde(default = "default_ch_mult")]
    pub ch_mult: Vec<usize>,
    /// ResNet blocks per level (decoder uses one more).
    #[serde(default = "default_num_res_blocks")]
    pub num_res_blocks: usize,
    /// φ mixing ratio q in `(1−q)·x + q·conv(x)`.
    #[serde(default = "default_quant_resi")]
    pub quant_resi: f64,
    /// 0: one φ per scale, 1: one shared φ, n ≥ 2: n partially shared φ.
    #[serde(default = "default_share_quant_resi")]
    pub share_quant_resi: usize,
    /// Side length of each scale's token map, from coarse to fine.
    pub patch_nums: Vec<usize>,
    /// Number of classes (the null class is extra).
    pub num_classes: usize,
    /// Transformer depth.
    pub depth: usize,
    /// Transformer width C (also the condition width D).
    pub embed_dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN hidden width over C.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// One shared AdaLN linear plus a per-block `ada_gss`.
    #[serde(default)]
    pub shared_aln: bool,
    /// L2-normalised q/k with a learned per-head scale.
    #[serde(default)]
    pub attn_l2_norm: bool,
    /// LayerNorm eps of the transformer.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Image side length in pixels.
    pub image_size: usize,
    /// Whether the file carries the VQ-VAE encoder (`vae.encoder.*`, `vae.quant_conv.*`).
    /// Sampling never uses it, so a file for generation only may leave it out (`false`);
    /// encoding images (editing, training) then fails with a typed error.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub encoder: bool,
    /// VQ-VAE spatial downsampling factor; derived from `ch_mult`, checked when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downsample: Option<usize>,
    /// Human-readable class names, `num_classes` of them when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// Fast-preview matrix, fitted at training or conversion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewMatrix>,
    /// License and attribution of the weights and their training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// The Distilled-Decoding student's settings, when the file carries `dd.` tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dd: Option<DdConfig>,
    /// The sampling settings this model scores best with (`nextscale tune-sampling`);
    /// requests that leave them unset take these instead of [`Sampling::OFFICIAL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Set for an HMAR transformer (`hmar.` tensors) instead of VAR's (`var.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmar: Option<HmarConfig>,
    /// Finer conditions than the classes, when the transformer was trained on them: its
    /// class embedding then has a row per subclass (plus the null row), and each image of
    /// a class is drawn under one of that class's subclasses
    /// (`pipeline::GenerateRequest::conditions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subclasses: Vec<Subclass>,
}

/// A subclass the transformer is conditioned on: a part of one class (for emoji, a
/// subcategory such as `animal-mammal` of `Animals & Nature`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subclass {
    /// Its name.
    pub name: String,
    /// The class it belongs to.
    pub class: usize,
    /// How often images of its class are drawn under it (its share of the class's
    /// training images; 0: never); the shares of a class need not sum to one.
    pub share: f64,
}

/// What an HMAR transformer adds to the config: its block split and its default mask
/// schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmarConfig {
    /// The next-scale and the mask stacks each have this many blocks; the `depth −
    /// n_layers_train` blocks before them are shared (`base_blocks`).
    pub n_layers_train: usize,
    /// Per scale, how many tokens are fixed by the next-scale pass (`s[0]`) and after each
    /// refinement pass (`s[j]`); each entry sums to the scale's `pn²`, and a one-entry
    /// schedule means no refinement.
    pub mask_schedule: Vec<Vec<usize>>,
}

impl HmarConfig {
    /// Next-scale and mask blocks of every released HMAR depth.
    pub const OFFICIAL_N_LAYERS_TRAIN: usize = 8;

    /// The official default mask schedule (`utils/sampling_arg_util.py`) for `patch_nums`:
    /// the 2×2 scale in passes of 1 then 3, the 3×3 scale in 1, 1, 2, 5, every other
    /// scale in one next-scale pass.
    pub fn official_mask_schedule(patch_nums: &[usize]) -> Vec<Vec<usize>> {
        patch_nums
            .iter()
            .map(|&pn| match pn {
                2 => vec![1, 3],
                3 => vec![1, 1, 2, 5],
                _ => vec![pn * pn],
            })
            .collect()
    }

    /// Why `schedule` does not fit `patch_nums`, if it does not.
    pub fn schedule_problem(schedule: &[Vec<usize>], patch_nums: &[usize]) -> Option<String> {
        if schedule.len() != patch_nums.len() {
            return Some(format!(
                "mask schedule has {} entries for {} scales",
                schedule.len(),
                patch_nums.len()
            ));
        }
        for (si, (s, pn)) in schedule.iter().zip(patch_nums).enumerate() {
            let sum = s.iter().try_fold(0usize, |a, &n| a.checked_add(n));
            if sum != Some(pn * pn) || (si == 0 && s.len() != 1) {
                return Some(format!(
                    "mask schedule entry {si} {s:?} must sum to the scale's {} tokens{}",
                    pn * pn,
                    if si == 0 { " in one pass" } else { "" }
                ));
            }
        }
        None
    }
}

/// The sampling settings of the scale-by-scale sampler: guidance and the two masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Classifier-free guidance strength (≥ 0).
    pub cfg: f64,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Nucleus mass in [0, 1] (0: off).
    pub top_p: f64,
}

impl Sampling {
    /// The official VAR sampling defaults, tuned for ImageNet 256 px.
    pub const OFFICIAL: Self = Self {
        cfg: 1.5,
        top_k: 900,
        top_p: 0.96,
    };

    /// Why these settings are out of range, if they are.
    pub fn problem(&self) -> Option<String> {
        Self::cfg_problem(self.cfg).or_else(|| Self::top_p_problem(self.top_p))
    }

    /// Why `cfg` is out of range (it must be finite and ≥ 0), if it is.
    pub fn cfg_problem(cfg: f64) -> Option<String> {
        (!cfg.is_finite() || cfg < 0.0).then(|| format!("cfg {cfg} must be a finite number ≥ 0"))
    }

    /// Why `top_p` is out of range (it must be in [0, 1]), if it is.
    pub fn top_p_problem(top_p: f64) -> Option<String> {
        (!(0.0..=1.0).contains(&top_p)).then(|| format!("top_p {top_p} must be in [0, 1]"))
    }
}

/// Settings of a Distilled-Decoding student (`dd.` tensors) next to the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdConfig {
    /// Scales before this index take tokens from the logits head, the rest from the
    /// continuous head.
    pub loss_split_t: usize,
    /// The steps of few-step sampling: `t_list[..1]` is one-step, `t_list[..2]` two-step.
    pub t_list: Vec<usize>,
}

impl DdConfig {
    /// Checks the settings against a teacher with `scales` scales.
    pub fn validate(&self, scales: usize) -> Result<()> {
        if self.loss_split_t > scales {
            return Err(Error::Config(format!(
                "dd.loss_split_t {} exceeds the {scales} scales",
                self.loss_split_t
            )));
        }
        if self.t_list.first() != Some(&0)
            || self.t_list.windows(2).any(|w| w[0] >= w[1])
            || self.t_list.iter().any(|&t| t >= scales)
        {
            return Err(Error::Config(format!(
                "dd.t_list {:?} must start at 0, increase and stay below {scales}",
                self.t_list
            )));
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Parses a strict JSON config (unknown fields are errors) and validates it.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The official VAR-dNN architecture (width 64·d, d heads, 10 scales at 256 px,
    /// V=4096, Cvae=32, ch=160, 1000 classes).
    pub fn official(depth: usize) -> Self {
        Self {
            vocab_size: 4096,
            cvae: 32,
            ch: 160,
            ch_mult: default_ch_mult(),
            num_res_blocks: 2,
            quant_resi: 0.5,
            share_quant_resi: 4,
            patch_nums: OFFICIAL_PATCH_NUMS.to_vec(),
            num_classes: 1000,
            depth,
            embed_dim: 64 * depth,
            num_heads: depth,
            mlp_ratio: 4.0,
            shared_aln: false,
            attn_l2_norm: true,
            norm_eps: 1e-6,
            image_size: 256,
            encoder: true,
            downsample: None,
            class_names: Vec::new(),
            preview: None,
            attribution: None,
            dd: None,
            sampling: None,
            hmar: None,
            subclasses: Vec::new(),
        }
    }

    /// The official HMAR-dNN architecture (NVlabs/HMAR): VAR-dNN's sizes, its blocks split
    /// into `depth − 8` base blocks and 8 next-scale and 8 mask blocks, with the official
    /// default mask schedule and, at a released depth, the official sampling.
    pub fn official_hmar(depth: usize) -> Self {
        let mut config = Self::official(depth);
        config.hmar = Some(HmarConfig {
            n_layers_train: HmarConfig::OFFICIAL_N_LAYERS_TRAIN.min(depth),
            mask_schedule: HmarConfig::official_mask_schedule(&config.patch_nums),
        });
        config.sampling = Self::official_hmar_sampling(depth);
        config
    }

    /// The official sampling of the released HMAR depths (`config/sample/hmar-d*.yaml`):
    /// cfg 1.7, 1.9, 2.1, 1.7 and top-k 1000, 950, 900, 1000 for d16, d20, d24, d30, top-p
    /// 0.99; `None` at other depths.
    pub fn official_hmar_sampling(depth: usize) -> Option<Sampling> {
        let (cfg, top_k) = match depth {
            16 => (1.7, 1000),
            20 => (1.9, 950),
            24 => (2.1, 900),
            30 => (1.7, 1000),
            _ => return None,
        };
        Some(Sampling {
            cfg,
            top_k,
            top_p: 0.99,
        })
    }

    /// The bundled emoji model's architecture: 32 px, an 8×8 latent quantized over
    /// scales (1, 2, 3, 4, 6, 8), V=512, Cvae=16, a small CNN (ch 32, `ch_mult` (1, 2, 2))
    /// and a 6-block, 192-wide transformer, sized to train on two CPU cores.
    pub fn emoji32(num_classes: usize) -> Self {
        Self {
            vocab_size: 512,
            cvae: 16,
            ch: 32,
            ch_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            patch_nums: vec![1, 2, 3, 4, 6, 8],
            num_classes,
            depth: 6,
            embed_dim: 192,
            num_heads: 6,
            image_size: 32,
            ..Self::official(6)
        }
    }

    /// A 2-block, 64-wide variant of [`Self::emoji32`] with a Distilled-Decoding student
    /// (`loss_split_t` 3, `t_list` [0, 3]): the smallest model that runs every code path,
    /// for tests and smoke runs.
    pub fn emoji32_tiny(num_classes: usize) -> Self {
        Self {
            depth: 2,
            embed_dim: 64,
            num_heads: 4,
            dd: Some(DdConfig {
                loss_split_t: 3,
                t_list: vec![0, 3],
            }),
            ..Self::emoji32(num_classes)
        }
    }

    /// Serialises the config to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Checks that every field is in range and that the fields agree with each other.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.cvae == 0 || self.ch == 0 {
            return err("V, Cvae and ch must be positive".into());
        }
        if self.ch_mult.is_empty() || self.ch_mult.contains(&0) {
            return err(format!(
                "ch_mult {:?} must be non-empty and positive",
                self.ch_mult
            ));
        }
        if self.ch_mult.len() > 8 {
            return err(format!("ch_mult {:?} has too many levels", self.ch_mult));
        }
        for m in &self.ch_mult {
            if !(self.ch * m).is_multiple_of(32) {
                return err(format!(
                    "channel width {} is not divisible by the 32 GroupNorm groups",
                    self.ch * m
                ));
            }
        }
        if self.num_res_blocks == 0 {
            return err("num_res_blocks must be positive".into());
        }
        if !self.quant_resi.is_finite() || self.quant_resi.abs() > 1.0 {
            return err(format!("quant_resi {} must be in [-1, 1]", self.quant_resi));
        }
        if self.patch_nums.len() < 2 {
            return err("patch_nums needs at least 2 scales".into());
        }
        if self.patch_nums.contains(&0) || self.patch_nums.windows(2).any(|w| w[0] > w[1]) {
            return err(format!(
                "patch_nums {:?} must be positive and non-decreasing",
                self.patch_nums
            ));
        }
        let downsample = self.derived_downsample();
        if let Some(d) = self.downsample
            && d != downsample
        {
            return err(format!(
                "downsample {d} disagrees with ch_mult {:?} (which gives {downsample})",
                self.ch_mult
            ));
        }
        let last = *self.patch_nums.last().expect("checked non-empty");
        if self.image_size != last * downsample {
            return err(format!(
                "image_size {} must equal the last patch_num {last} × downsample {downsample}",
                self.image_size
            ));
        }
        if self.num_classes == 0 {
            return err("num_classes must be positive".into());
        }
        if self.depth == 0 || self.embed_dim == 0 || self.num_heads == 0 {
            return err("depth, embed_dim and num_heads must be positive".into());
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return err(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if !self.mlp_ratio.is_finite() || self.mlp_ratio <= 0.0 {
            return err(format!("mlp_ratio {} must be positive", self.mlp_ratio));
        }
        if !self.norm_eps.is_finite() || self.norm_eps <= 0.0 {
            return err(format!("norm_eps {} must be positive", self.norm_eps));
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.num_classes {
            return err(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.num_classes
            ));
        }
        if let Some(p) = &self.preview
            && (p.weight.len() != 3
                || p.weight.iter().any(|r| r.len() != self.cvae)
                || p.weight
                    .iter()
                    .flatten()
                    .chain(&p.bias)
                    .any(|v| !v.is_finite()))
        {
            return err(format!("preview matrix must be 3×{} and finite", self.cvae));
        }
        if let Some(dd) = &self.dd {
            dd.validate(self.patch_nums.len())?;
        }
        if let Some(hmar) = &self.hmar {
            if hmar.n_layers_train == 0 || hmar.n_layers_train > self.depth {
                return err(format!(
                    "hmar.n_layers_train {} must be in 1..={} (depth)",
                    hmar.n_layers_train, self.depth
                ));
            }
            if self.shared_aln || self.dd.is_some() {
                return err("an HMAR model has no shared AdaLN and no distilled student".into());
            }
            if let Some(problem) =
                HmarConfig::schedule_problem(&hmar.mask_schedule, &self.patch_nums)
            {
                return err(format!("hmar: {problem}"));
            }
        }
        if !self.subclasses.is_empty() {
            if let Some(s) = self
                .subclasses
                .iter()
                .find(|s| s.class >= self.num_classes || !s.share.is_finite() || s.share < 0.0)
            {
                return err(format!(
                    "subclass `{}`: class {} of {}, share {} (must be ≥ 0)",
                    s.name, s.class, self.num_classes, s.share
                ));
            }
            if let Some(c) = (0..self.num_classes).find(|&c| {
                !self
                    .subclasses
                    .iter()
                    .any(|s| s.class == c && s.share > 0.0)
            }) {
                return err(format!("class {c} has no subclass with a positive share"));
            }
        }
        if let Some(problem) = self.sampling.as_ref().and_then(Sampling::problem) {
            return err(format!("sampling: {problem}"));
        }
        if let Some(s) = &self.sampling
            && s.top_k > self.vocab_size
        {
            return err(format!(
                "sampling: top_k {} is more than V {}",
                s.top_k, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Rows of the transformer's class embedding before the null row: the subclasses when
    /// the file has them, else the classes.
    pub fn cond_classes(&self) -> usize {
        match self.subclasses.len() {
            0 => self.num_classes,
            n => n,
        }
    }

    /// The sampling requests default to: the model's recommendation, else the official one
    /// with its top-k capped at V (top-k 900 over fewer tokens keeps them all, as V does).
    pub fn default_sampling(&self) -> Sampling {
        self.sampling.unwrap_or(Sampling {
            top_k: Sampling::OFFICIAL.top_k.min(self.vocab_size),
            ..Sampling::OFFICIAL
        })
    }

    /// Spatial downsampling factor of the VQ-VAE, `2^(len(ch_mult)−1)`.
    pub fn derived_downsample(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }

    /// Total token count L over all scales (saturating, so that a config not yet checked
    /// against its file cannot overflow it).
    pub fn seq_len(&self) -> usize {
        self.patch_nums
            .iter()
            .fold(0usize, |n, &p| n.saturating_add(p.saturating_mul(p)))
    }

    /// Side of the finest token map (= the latent f_hat side).
    pub fn latent_size(&self) -> usize {
        *self.patch_nums.last().expect("validated")
    }

    /// Number of φ convolutions stored in the file.
    pub fn num_phi(&self) -> usize {
        match self.share_quant_resi {
            0 => self.patch_nums.len(),
            n => n,
        }
    }

    /// FFN hidden width, `round(C · mlp_ratio)`.
    pub fn ffn_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio).round() as usize
    }

    /// Resolves a class given as a number or a name; `None` means unconditional.
    pub fn resolve_class(&self, class: &str) -> Result<usize> {
        if let Ok(label) = class.parse::<usize>() {
            return self.check_class(label);
        }
        self.class_names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(class))
            .ok_or_else(|| Error::UnknownClass(class.to_string()))
    }

    /// Checks that a label is in `0..num_classes`.
    pub fn check_class(&self, label: usize) -> Result<usize> {
        if label < self.num_classes {
            Ok(label)
        } else {
            Err(Error::ClassOutOfRange {
                label,
                num_classes: self.num_classes,
            })
        }
    }

    /// Checks a top-k that a user asked for: at most V (0 keeps every token). A model's own
    /// default may exceed a small V, where it keeps every token too.
    pub fn check_top_k(&self, top_k: usize) -> Result<usize> {
        if top_k <= self.vocab_size {
            Ok(top_k)
        } else {
            Err(Error::BadRequest(format!(
                "top-k {top_k} is more than the model's {} tokens (0 keeps every token)",
                self.vocab_size
            )))
        }
    }

    /// Name of a class, or its number when the model has no names.
    pub fn class_name(&self, label: usize) -> String {
        self.class_names
            .get(label)
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_json() -> String {
        r#"{"V":64,"Cvae":8,"ch":32,"share_quant_resi":4,"patch_nums":[1,2,3,4],
            "num_classes":10,"depth":2,"embed_dim":64,"num_heads":4,"shared_aln":false,
            "attn_l2_norm":true,"image_size":64}"#
            .to_string()
    }

    #[test]
    fn parses_fixture_style_config() {
        let c = ModelConfig::from_json(&tiny_json()).unwrap();
        assert_eq!(c.ch_mult, OFFICIAL_CH_MULT);
        assert_eq!(c.seq_len(), 30);
        assert_eq!(c.derived_downsample(), 16);
    }

    #[test]
    fn rejects_unknown_field() {
        let json = tiny_json().replace("\"ch\":32", "\"ch\":32,\"chh\":1");
        assert!(
            matches!(ModelConfig::from_json(&json), Err(Error::Config(m)) if m.contains("chh"))
        );
    }

    #[test]
    fn rejects_inconsistent_image_size() {
        let json = tiny_json().replace("\"image_size\":64", "\"image_size\":32");
        assert!(
            matches!(ModelConfig::from_json(&json), Err(Error::Config(m)) if m.contains("image_size"))
        );
    }

    #[test]
    fn rejects_heads_not_dividing_width() {
        let json = tiny_json().replace("\"num_heads\":4", "\"num_heads\":5");
        assert!(matches!(
            ModelConfig::from_json(&json),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn official_d16_is_valid() {
        let c = ModelConfig::official(16);
        c.validate().unwrap();
        assert_eq!(c.seq_len(), 680);
    }

    #[test]
    fn default_top_k_is_capped_at_v_and_a_recommendation_past_v_is_refused() {
        let c = ModelConfig::from_json(&tiny_json()).unwrap();
        assert_eq!(c.default_sampling().top_k, 64);
        assert_eq!(
            ModelConfig::official(16).default_sampling(),
            Sampling::OFFICIAL
        );
        let json = tiny_json().replace(
            "\"image_size\":64",
            "\"image_size\":64,\"sampling\":{\"cfg\":1.0,\"top_k\":65,\"top_p\":0.9}",
        );
        assert!(
            matches!(ModelConfig::from_json(&json), Err(Error::Config(m)) if m.contains("top_k 65"))
        );
    }

    #[test]
    fn class_resolution() {
        let mut c = ModelConfig::from_json(&tiny_json()).unwrap();
        assert_eq!(c.resolve_class("3").unwrap(), 3);
        assert!(matches!(
            c.resolve_class("10"),
            Err(Error::ClassOutOfRange { label: 10, .. })
        ));
        c.class_names = (0..10).map(|i| format!("c{i}")).collect();
        assert_eq!(c.resolve_class("C7").unwrap(), 7);
        assert!(matches!(
            c.resolve_class("dog"),
            Err(Error::UnknownClass(_))
        ));
    }

    fn subclass(name: &str, class: usize, share: f64) -> Subclass {
        Subclass {
            name: name.into(),
            class,
            share,
        }
    }

    /// Every class needs a subclass it can draw; a subclass names a class of the model and a
    /// finite share; a valid list survives the JSON round trip.
    #[test]
    fn subclasses_must_cover_every_class_with_a_positive_share() {
        let mut c =
            ModelConfig::from_json(&tiny_json().replace("\"num_classes\":10", "\"num_classes\":2"))
                .unwrap();
        c.subclasses = vec![subclass("a", 0, 1.0), subclass("b", 1, 0.0)];
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("class 1")));
        c.subclasses = vec![subclass("a", 0, 1.0), subclass("b", 2, 1.0)];
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("`b`")));
        c.subclasses = vec![subclass("a", 0, 1.0), subclass("b", 1, f64::NAN)];
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("`b`")));
        c.subclasses[1].share = 0.5;
        assert_eq!(ModelConfig::from_json(&c.to_json()).unwrap(), c);
    }
}
