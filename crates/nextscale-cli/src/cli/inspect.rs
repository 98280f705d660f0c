//! `nextscale inspect`: config, parameter counts and classes of a model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;

use super::load;

/// Prints what a model file or fixture directory holds.
pub fn run(path: &Path) -> Result<ExitCode> {
    let model = load::model(path, &Device::flex())?;
    let c = &model.config;
    let (vae, transformer, dd) = model.num_params();
    let family = model.family();
    println!("model       {}", path.display());
    println!(
        "image       {0}×{0} px, latent {1}×{1}, Cvae {2}, V {3}",
        c.image_size,
        c.latent_size(),
        c.cvae,
        c.vocab_size
    );
    println!("scales      {:?} ({} tokens)", c.patch_nums, c.seq_len());
    println!(
        "vq-vae      ch {} ch_mult {:?} φ {} (share_quant_resi {}){}",
        c.ch,
        c.ch_mult,
        c.num_phi(),
        c.share_quant_resi,
        if c.encoder {
            ""
        } else {
            ", no encoder (generation only)"
        }
    );
    println!(
        "{family:<11} depth {} width {} heads {} mlp_ratio {} shared_aln {} attn_l2_norm {}",
        c.depth, c.embed_dim, c.num_heads, c.mlp_ratio, c.shared_aln, c.attn_l2_norm
    );
    if let Some(h) = &c.hmar {
        println!(
            "hmar        {} base + {} next-scale + {} mask blocks; mask schedule {:?}",
            c.depth - h.n_layers_train,
            h.n_layers_train,
            h.n_layers_train,
            h.mask_schedule
        );
    }
    println!(
        "parameters  vae {vae} + {family} {transformer} + dd {dd} = {}",
        vae + transformer + dd
    );
    match &c.dd {
        Some(d) => println!(
            "distilled   student with loss_split_t {}, t_list {:?} (modes var, dd1{})",
            d.loss_split_t,
            d.t_list,
            if d.t_list.len() > 1 { ", dd2" } else { "" }
        ),
        None => println!("distilled   no student (mode var only)"),
    }
    let s = c.default_sampling();
    println!(
        "sampling    cfg {}, top-k {}, top-p {} ({})",
        s.cfg,
        s.top_k,
        s.top_p,
        if c.sampling.is_some() {
            "the file's recommendation"
        } else {
            "the official defaults"
        }
    );
    println!(
        "preview     {}",
        if c.preview.is_some() {
            "stored matrix"
        } else {
            "none stored (fitted on first use)"
        }
    );
    if let Some(a) = &c.attribution {
        println!("attribution {a}");
    }
    match c.subclasses.len() {
        0 => println!("classes     {}", c.num_classes),
        n => println!("classes     {} (drawn under {n} subclasses)", c.num_classes),
    }
    for (i, name) in c.class_names.iter().enumerate() {
        let subclasses: Vec<&str> = (c.subclasses.iter())
            .filter(|s| s.class == i)
            .map(|s| s.name.as_str())
            .collect();
        if subclasses.is_empty() {
            println!("  {i:>4}  {name}");
        } else {
            println!("  {i:>4}  {name}: {}", subclasses.join(", "));
        }
    }
    println!("config      {}", serde_json::to_string_pretty(c)?);
    Ok(ExitCode::SUCCESS)
}
