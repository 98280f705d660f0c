//! `nextscale convert`: official VAR or HMAR checkpoints → one nextscale model file.
//!
//! Reads the VQ-VAE and VAR (or HMAR) state dicts (`.pth` through pytorch-reader, or safetensors),
//! infers the config from the tensor shapes, checks the layout, drops the derived buffers,
//! fits the fast-preview matrix and writes safetensors with the config in `__metadata__`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::convert::infer_config;
use nextscale::model::{Model, check_layout};
use nextscale::train::StateDict;
use nextscale::weights::{WeightFile, is_derived_buffer};
use pytorch_reader::{DType, PytorchReader};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::load;

/// Storage dtype of the written file.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (half the size; the loader widens to f32).
    F16,
    /// bfloat16 (half the size, f32's range, fewer mantissa bits).
    Bf16,
}

/// Options of `nextscale convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// VQ-VAE state dict (e.g. vae_ch160v4096z32.pth), or a safetensors file whose names
    /// already carry the `vae.`/`var.` or `hmar.` prefixes (then `--var`/`--hmar` is not
    /// needed).
    #[arg(long)]
    vae: PathBuf,
    /// VAR state dict (e.g. var_d16.pth).
    #[arg(long, conflicts_with = "hmar")]
    var: Option<PathBuf>,
    /// HMAR state dict (NVlabs/HMAR, e.g. hmar_d16.pth): the model file records its block
    /// split, the official default mask schedule and the official sampling of its depth.
    #[arg(long)]
    hmar: Option<PathBuf>,
    /// Output model file.
    #[arg(long)]
    out: PathBuf,
    /// Scale schedule, comma-separated, when it is not the official one.
    #[arg(long, value_delimiter = ',')]
    patch_nums: Option<Vec<usize>>,
    /// Attention heads, when the model has no `scale_mul_1H11` (official: depth).
    #[arg(long)]
    num_heads: Option<usize>,
    /// Class names, one per line.
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// License and attribution text stored with the weights.
    #[arg(long)]
    attribution: Option<String>,
    /// Storage dtype.
    #[arg(long, value_enum, default_value_t = StoreDtype::F32)]
    dtype: StoreDtype,
    /// Leave out the VQ-VAE encoder, which sampling never uses (a smaller download; such a
    /// file cannot encode images).
    #[arg(long)]
    no_encoder: bool,
}

fn to_f32(bytes: &[u8], dtype: DType, name: &str) -> Result<Option<Vec<f32>>> {
    Ok(Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().expect("chunk of 8")) as f32)
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ if is_derived_buffer(name) => return Ok(None),
        other => bail!("tensor `{name}` has dtype {other:?}; expected a float type"),
    }))
}

/// Reads a state dict, prefixing names with `prefix` unless they already carry one.
fn read_state_dict(path: &Path, prefix: &str, into: &mut StateDict) -> Result<()> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let add = |into: &mut StateDict, name: &str, shape: Vec<usize>, values: Vec<f32>| {
        let full = if ["vae.", "var.", "hmar."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            name.to_string()
        } else {
            format!("{prefix}{name}")
        };
        into.insert(full, (shape, values));
    };
    if is_safetensors {
        let bytes = load::read(path)?;
        let file = WeightFile::parse(&bytes)?;
        for name in file.names() {
            if is_derived_buffer(&name) {
                continue;
            }
            let (values, shape) = file.read_f32(&name)?;
            add(into, &name, shape, values);
        }
    } else {
        let reader =
            PytorchReader::new(path).with_context(|| format!("reading {}", path.display()))?;
        for (name, tensor) in reader.tensors() {
            let bytes = tensor
                .read()
                .with_context(|| format!("reading tensor {name}"))?;
            if let Some(values) = to_f32(&bytes, tensor.dtype(), name)? {
                add(into, name, tensor.shape().to_vec(), values);
            }
        }
    }
    Ok(())
}

/// The model file of several state dicts (`vae.`, `var.`, `dd.` tensors) and a config.
pub fn merged_model_bytes(
    config: &nextscale::ModelConfig,
    parts: &[&StateDict],
    dtype: StoreDtype,
) -> Result<Vec<u8>> {
    let mut all = StateDict::new();
    for part in parts {
        all.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    model_bytes(&all, &config.to_json(), dtype)
}

/// A model on the host device from state dicts (for sample grids while training).
pub fn host_model(config: &nextscale::ModelConfig, parts: &[&StateDict]) -> Result<Model> {
    let bytes = merged_model_bytes(config, parts, StoreDtype::F32)?;
    Ok(Model::from_safetensors(&bytes, &Device::flex())?)
}

/// Serialises a state dict and config as a model file.
pub fn model_bytes(state: &StateDict, config_json: &str, dtype: StoreDtype) -> Result<Vec<u8>> {
    let metadata = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config_json.to_string())]);
    state_bytes(state, metadata, dtype)
}

/// Serialises a state dict with the given `__metadata__` entries.
pub fn state_bytes(
    state: &StateDict,
    metadata: HashMap<String, String>,
    dtype: StoreDtype,
) -> Result<Vec<u8>> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(name, (shape, values))| {
            let bytes = match dtype {
                StoreDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                StoreDtype::F16 => values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                StoreDtype::Bf16 => values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        StoreDtype::F32 => Dtype::F32,
        StoreDtype::F16 => Dtype::F16,
        StoreDtype::Bf16 => Dtype::BF16,
    };
    let views = encoded
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(st_dtype, s.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// True for the tensors of the VQ-VAE encoder and its `quant_conv`, which sampling never uses.
fn is_encoder_tensor(name: &str) -> bool {
    name.starts_with("vae.encoder.") || name.starts_with("vae.quant_conv.")
}

/// Runs `nextscale convert`.
pub fn run(args: ConvertArgs) -> Result<ExitCode> {
    let mut state = StateDict::new();
    read_state_dict(&args.vae, "vae.", &mut state)?;
    if let Some(var) = &args.var {
        read_state_dict(var, "var.", &mut state)?;
    }
    if let Some(hmar) = &args.hmar {
        read_state_dict(hmar, "hmar.", &mut state)?;
    }
    let shapes: BTreeMap<String, Vec<usize>> = state
        .iter()
        .map(|(n, (s, _))| (n.clone(), s.clone()))
        .collect();
    let mut config = infer_config(&shapes, args.patch_nums.clone(), args.num_heads)?;
    check_layout(&shapes, &config, &Device::flex())?;
    if let Some(path) = &args.class_names {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.class_names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    config.attribution = args.attribution.clone();
    if args.no_encoder {
        config.encoder = false;
        state.retain(|name, _| !is_encoder_tensor(name));
    }
    config.validate()?;
    // Load once to validate every tensor end to end and fit the preview matrix.
    let draft = model_bytes(&state, &config.to_json(), StoreDtype::F32)?;
    let model = Model::from_safetensors(&draft, &Device::flex())?;
    config.preview = Some(pollster::block_on(model.preview_matrix())?.clone());
    drop(model);
    let bytes = model_bytes(&state, &config.to_json(), args.dtype)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, {} tensors{}): {} V {} Cvae {} depth {} width {} scales {:?}",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        state.len(),
        if args.no_encoder { ", no encoder" } else { "" },
        if config.hmar.is_some() { "HMAR" } else { "VAR" },
        config.vocab_size,
        config.cvae,
        config.depth,
        config.embed_dim,
        config.patch_nums
    );
    Ok(ExitCode::SUCCESS)
}
