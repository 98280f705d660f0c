//! A config inferred from the tensor shapes of official `vae_ch160v4096z32.pth` +
//! `var_dNN.pth` (or NVlabs `hmar_dNN.pth`) state dicts; [`crate::model::check_layout`]
//! then checks them against it.

use std::collections::BTreeMap;

use crate::config::{HmarConfig, ModelConfig, OFFICIAL_PATCH_NUMS};
use crate::error::{Error, Result};

/// Infers the model config from official tensor shapes (names prefixed `vae.` and `var.`
/// or `hmar.`). `patch_nums` defaults to the official schedule when the sequence length
/// matches it; `num_heads` is read from `scale_mul_1H11`, else it is `depth` as in every
/// official model. An HMAR model gets `n_layers_train` from its block counts, the official
/// default mask schedule and, at a released depth, the official sampling.
pub fn infer_config(
    shapes: &BTreeMap<String, Vec<usize>>,
    patch_nums: Option<Vec<usize>>,
    num_heads: Option<usize>,
) -> Result<ModelConfig> {
    let get = |name: &str| -> Result<&Vec<usize>> {
        shapes
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    };
    let dim = |name: &str, axis: usize| -> Result<usize> {
        get(name)?
            .get(axis)
            .copied()
            .ok_or_else(|| Error::Config(format!("`{name}` has too few axes")))
    };
    let vocab_size = dim("vae.quantize.embedding.weight", 0)?;
    let cvae = dim("vae.quantize.embedding.weight", 1)?;
    let ch = dim("vae.encoder.conv_in.weight", 0)?;
    let levels = (0..)
        .take_while(|i| shapes.contains_key(&format!("vae.encoder.down.{i}.block.0.conv1.weight")))
        .count();
    let ch_mult = (0..levels)
        .map(|i| dim(&format!("vae.encoder.down.{i}.block.0.conv1.weight"), 0).map(|c| c / ch))
        .collect::<Result<Vec<_>>>()?;
    let num_res_blocks = (0..)
        .take_while(|b| shapes.contains_key(&format!("vae.encoder.down.0.block.{b}.conv1.weight")))
        .count();
    let count = |pattern: &dyn Fn(usize) -> String| {
        (0..)
            .take_while(|i| shapes.contains_key(&pattern(*i)))
            .count()
    };
    let share_quant_resi = if shapes.contains_key("vae.quantize.quant_resi.qresi.weight") {
        1
    } else if shapes.contains_key("vae.quantize.quant_resi.qresi_ls.0.weight") {
        count(&|i| format!("vae.quantize.quant_resi.qresi_ls.{i}.weight"))
    } else {
        0
    };
    let hmar = shapes.keys().any(|n| n.starts_with("hmar."));
    let t = if hmar { "hmar" } else { "var" };
    let num_classes = dim(&format!("{t}.class_emb.weight"), 0)?.saturating_sub(1);
    let embed_dim = dim(&format!("{t}.class_emb.weight"), 1)?;
    let blocks = |stack: &str| count(&|i| format!("{t}.{stack}.{i}.attn.proj.weight"));
    let (depth, n_layers_train, first_block) = if hmar {
        let (base, ns, mask) = (
            blocks("base_blocks"),
            blocks("ns_blocks"),
            blocks("mask_blocks"),
        );
        if ns != mask {
            return Err(Error::Config(format!(
                "{ns} next-scale blocks but {mask} mask blocks: HMAR has as many of each"
            )));
        }
        let first = if base > 0 { "base_blocks" } else { "ns_blocks" };
        (base + ns, ns, format!("hmar.{first}.0"))
    } else {
        (blocks("blocks"), 0, "var.blocks.0".to_string())
    };
    let attn_l2_norm = shapes.contains_key(&format!("{first_block}.attn.scale_mul_1H11"));
    let num_heads = match (num_heads, attn_l2_norm) {
        (Some(h), _) => h,
        (None, true) => dim(&format!("{first_block}.attn.scale_mul_1H11"), 1)?,
        (None, false) => depth,
    };
    let seq_len = dim(&format!("{t}.pos_1LC"), 1)?;
    let patch_nums = match patch_nums {
        Some(p) => p,
        None if seq_len == OFFICIAL_PATCH_NUMS.iter().map(|p| p * p).sum::<usize>() => {
            OFFICIAL_PATCH_NUMS.to_vec()
        }
        None => {
            return Err(Error::Config(format!(
                "sequence length {seq_len} is not the official schedule's; pass patch_nums"
            )));
        }
    };
    let hidden = dim(&format!("{first_block}.ffn.fc1.weight"), 0)?;
    let mut config = ModelConfig {
        vocab_size,
        cvae,
        ch,
        ch_mult,
        num_res_blocks,
        share_quant_resi,
        patch_nums,
        num_classes,
        depth,
        embed_dim,
        num_heads,
        mlp_ratio: hidden as f64 / embed_dim.max(1) as f64,
        shared_aln: shapes.contains_key("var.shared_ada_lin.1.weight"),
        attn_l2_norm,
        image_size: 0,
        ..ModelConfig::official(depth)
    };
    if hmar {
        config.sampling = ModelConfig::official_hmar_sampling(depth);
        config.hmar = Some(HmarConfig {
            n_layers_train,
            mask_schedule: HmarConfig::official_mask_schedule(&config.patch_nums),
        });
    }
    config.image_size = config.latent_size() * config.derived_downsample();
    config.validate()?;
    Ok(config)
}
