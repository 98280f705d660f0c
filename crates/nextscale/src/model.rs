//! A loaded model: config, VQ-VAE and a next-scale transformer (VAR or HMAR) on one device.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::tensor::Device;

use crate::config::{CONFIG_METADATA_KEY, ModelConfig, PreviewMatrix};
use crate::dd::DdModel;
use crate::error::{Error, Result};
use crate::hmar::Hmar;
use crate::preview::fit_preview;
use crate::var::Var;
use crate::vqvae::Vqvae;
use crate::weights::{
    DD_PREFIX, HMAR_PREFIX, ParamSource, VAE_PREFIX, VAR_PREFIX, WeightFile, is_derived_buffer,
};

/// Keys of a fixture `config.json` that describe the reference run, not the model.
const FIXTURE_RUN_KEYS: [&str; 14] = [
    "cfgs",
    "seed",
    "batch",
    "greedy",
    "t_lists",
    "loss_split_t",
    "edit",
    "official",
    "blocks",
    "vae",
    "forward",
    "refine_cfg_ratio",
    "sampled",
    "labels",
];

/// The transformer of a model: one of the two next-scale families.
#[derive(Debug)]
pub enum Transformer {
    /// VAR (`var.` tensors): every scale attends to the coarser ones through a KV cache.
    Var(Box<Var>),
    /// HMAR (`hmar.` tensors): each scale attends within itself, then refinement passes.
    Hmar(Box<Hmar>),
}

/// A VQ-VAE + next-scale transformer model, with an optional Distilled-Decoding student
/// (VAR only), ready to generate.
#[derive(Debug)]
pub struct Model {
    /// Its hyper-parameters and metadata.
    pub config: ModelConfig,
    /// The tokenizer.
    pub vae: Vqvae,
    /// The transformer.
    pub transformer: Transformer,
    /// The student (`dd.` tensors), when `config.dd` is set.
    pub dd: Option<DdModel>,
    device: Device,
    fitted_preview: OnceLock<PreviewMatrix>,
}

impl Model {
    /// Loads a model file: safetensors with the config JSON in `__metadata__`.
    pub fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Self> {
        let file = WeightFile::parse(bytes)?;
        let json = file.metadata(CONFIG_METADATA_KEY).ok_or_else(|| {
            Error::Config(format!(
                "no `{CONFIG_METADATA_KEY}` entry in the safetensors metadata"
            ))
        })?;
        let config = ModelConfig::from_json(json)?;
        Self::from_weights(config, &file, device)
    }

    /// Loads weights with a separately given config (as in a fixture directory).
    ///
    /// Every tensor's presence, shape and dtype is checked against the config before
    /// anything is placed on the device.
    pub fn from_weights(config: ModelConfig, file: &WeightFile, device: &Device) -> Result<Self> {
        config.validate()?;
        let names = file.names();
        let has_dd = names.iter().any(|n| n.starts_with(DD_PREFIX));
        if has_dd && !names.iter().any(|n| n.starts_with(VAR_PREFIX)) {
            return Err(Error::Config(
                "this file holds a Distilled-Decoding student (`dd.` tensors) without its VAR teacher; load it with `dd::DdPair`"
                    .into(),
            ));
        }
        let has_hmar = names.iter().any(|n| n.starts_with(HMAR_PREFIX));
        if has_hmar != config.hmar.is_some() {
            return Err(Error::Config(if has_hmar {
                "the file has `hmar.` tensors but its config has no `hmar` settings".into()
            } else {
                "the config has `hmar` settings but the file has no `hmar.` tensors".into()
            }));
        }
        if has_dd && config.dd.is_none() {
            return Err(Error::Config(
                "the file has `dd.` tensors but its config has no `dd` settings".into(),
            ));
        }
        let shapes: BTreeMap<String, Vec<usize>> = names
            .into_iter()
            .filter(|n| !n.starts_with(DD_PREFIX))
            .filter_map(|n| file.shape(&n).map(|s| (n, s)))
            .collect();
        for name in check_layout(&shapes, &config, device)?.keys() {
            file.check_float(name)?;
        }
        let mut vae_src = ParamSource::load(file, VAE_PREFIX, device);
        let vae = Vqvae::new(&mut vae_src, &config)?;
        vae_src.finish()?;
        let transformer = if config.hmar.is_some() {
            let mut src = ParamSource::load(file, HMAR_PREFIX, device);
            let hmar = Hmar::new(&mut src, &config)?;
            src.finish()?;
            Transformer::Hmar(Box::new(hmar))
        } else {
            let mut src = ParamSource::load(file, VAR_PREFIX, device);
            let var = Var::new(&mut src, &config)?;
            src.finish()?;
            Transformer::Var(Box::new(var))
        };
        let dd = match &config.dd {
            Some(dd_config) => {
                let mut dd_src = ParamSource::load(file, DD_PREFIX, device);
                let dd = DdModel::new(&mut dd_src, &config, dd_config.loss_split_t)?;
                dd_src.finish()?;
                Some(dd)
            }
            None => None,
        };
        Ok(Self::assemble(config, vae, transformer, dd, device))
    }

    /// A model with random weights (for benchmarks and as a training start).
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut src = ParamSource::random(seed, device);
        let vae = Vqvae::new(&mut src, &config)?;
        let transformer = if config.hmar.is_some() {
            Transformer::Hmar(Box::new(Hmar::new(&mut src, &config)?))
        } else {
            Transformer::Var(Box::new(Var::new(&mut src, &config)?))
        };
        let dd = match &config.dd {
            Some(dd_config) => Some(DdModel::new(&mut src, &config, dd_config.loss_split_t)?),
            None => None,
        };
        Ok(Self::assemble(config, vae, transformer, dd, device))
    }

    fn assemble(
        config: ModelConfig,
        vae: Vqvae,
        transformer: Transformer,
        dd: Option<DdModel>,
        device: &Device,
    ) -> Self {
        Self {
            config,
            vae,
            transformer,
            dd,
            device: device.clone(),
            fitted_preview: OnceLock::new(),
        }
    }

    /// The VAR transformer; an HMAR model answers with a typed error naming `what` needs VAR.
    pub fn var(&self, what: &str) -> Result<&Var> {
        match &self.transformer {
            Transformer::Var(var) => Ok(var),
            Transformer::Hmar(_) => Err(Error::BadRequest(format!(
                "{what} needs a VAR model; this one is HMAR"
            ))),
        }
    }

    /// The model family: `"var"` or `"hmar"`.
    pub fn family(&self) -> &'static str {
        match self.transformer {
            Transformer::Var(_) => "var",
            Transformer::Hmar(_) => "hmar",
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The fast-preview matrix: the stored one, else one fitted (once) on decoded random
    /// token pyramids.
    pub async fn preview_matrix(&self) -> Result<&PreviewMatrix> {
        if let Some(p) = &self.config.preview {
            return Ok(p);
        }
        if let Some(p) = self.fitted_preview.get() {
            return Ok(p);
        }
        let fitted = fit_preview(&self.vae, &self.config, &self.device).await?;
        Ok(self.fitted_preview.get_or_init(|| fitted))
    }

    /// Parameter counts `(vae, transformer, dd)` (0 without a student).
    pub fn num_params(&self) -> (usize, usize, usize) {
        use burn::module::Module;
        let dd = self.dd.as_ref().map_or(0, |d| d.num_params());
        let transformer = match &self.transformer {
            Transformer::Var(var) => var.num_params(),
            Transformer::Hmar(hmar) => hmar.num_params(),
        };
        (self.vae.num_params(), transformer, dd)
    }
}

/// Every tensor (prefixed name → shape) a model of `config` reads. Only 1-element
/// placeholders are placed on `device`.
pub fn expected_tensors(
    config: &ModelConfig,
    device: &Device,
) -> Result<BTreeMap<String, Vec<usize>>> {
    config.validate()?;
    let mut vae_src = ParamSource::spec(VAE_PREFIX, device);
    Vqvae::new(&mut vae_src, config)?;
    let mut all = vae_src.into_spec();
    if config.hmar.is_some() {
        let mut src = ParamSource::spec(HMAR_PREFIX, device);
        Hmar::new(&mut src, config)?;
        all.extend(src.into_spec());
    } else {
        let mut src = ParamSource::spec(VAR_PREFIX, device);
        Var::new(&mut src, config)?;
        all.extend(src.into_spec());
    }
    Ok(all)
}

/// Refuses a config whose counts need more than the file holds, before anything is built
/// from them: every transformer block, VQ-VAE residual block and φ convolution has tensors
/// of its own, so `depth`, `num_res_blocks` per level and the φ count are each at most the
/// file's tensor count; and the position embedding holds `L·C` values (`L` tokens over every
/// scale), at most the file's values. (Widths and sizes are then checked tensor by tensor.)
pub fn check_counts(config: &ModelConfig, shapes: &BTreeMap<String, Vec<usize>>) -> Result<()> {
    let held = shapes.len();
    let values = shapes
        .values()
        .map(|s| s.iter().fold(1usize, |n, &d| n.saturating_mul(d)))
        .fold(0usize, usize::saturating_add);
    let seq_len = config.seq_len();
    let levels = config.ch_mult.len();
    let checks = [
        (
            format!("depth {}", config.depth),
            config.depth,
            held,
            "tensors",
        ),
        (
            format!(
                "num_res_blocks {} at {levels} levels",
                config.num_res_blocks
            ),
            config.num_res_blocks.saturating_mul(levels),
            held,
            "tensors",
        ),
        (
            format!(
                "share_quant_resi {} ({} φ convolutions)",
                config.share_quant_resi,
                config.num_phi()
            ),
            config.num_phi(),
            held,
            "tensors",
        ),
        (
            format!(
                "patch_nums ({seq_len} tokens) at width {}",
                config.embed_dim
            ),
            seq_len.saturating_mul(config.embed_dim),
            values,
            "values",
        ),
    ];
    for (what, count, limit, unit) in checks {
        if count > limit {
            return Err(Error::Config(format!(
                "{what} would need more {unit} than the file's {limit}"
            )));
        }
    }
    Ok(())
}

/// Checks a checkpoint's tensors against what the inferred config implies: every expected
/// tensor present with its shape, nothing else but derived buffers. Returns the expected map.
///
/// The config's counts are first bounded by the file's own size (see [`check_counts`]), so
/// that no config value makes this loop or allocate past what the file holds.
pub fn check_layout(
    shapes: &BTreeMap<String, Vec<usize>>,
    config: &ModelConfig,
    device: &Device,
) -> Result<BTreeMap<String, Vec<usize>>> {
    check_counts(config, shapes)?;
    let expected = expected_tensors(config, device)?;
    for (name, shape) in &expected {
        match shapes.get(name) {
            None => return Err(Error::MissingTensor(name.clone())),
            Some(actual) if actual != shape => {
                return Err(Error::ShapeMismatch {
                    name: name.clone(),
                    actual: actual.clone(),
                    expected: shape.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let extra: Vec<String> = shapes
        .keys()
        .filter(|n| !expected.contains_key(*n) && !is_derived_buffer(n))
        .cloned()
        .collect();
    if extra.is_empty() {
        Ok(expected)
    } else {
        Err(Error::ExtraTensors(extra))
    }
}

impl ModelConfig {
    /// Parses a fixture directory's `config.json`: model fields strictly, reference-run
    /// fields (`cfgs`, `seed`, …) ignored.
    pub fn from_fixture_json(json: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            for key in FIXTURE_RUN_KEYS {
                map.remove(key);
            }
            // HMAR fixtures give the block split and the runs' mask schedule at the top.
            if let Some(n_layers_train) = map.remove("n_layers_train") {
                let mask_schedule = map.remove("mask_schedule").unwrap_or_default();
                map.insert(
                    "hmar".into(),
                    serde_json::json!({
                        "n_layers_train": n_layers_train,
                        "mask_schedule": mask_schedule,
                    }),
                );
            }
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}
