//! `nextscale data`: builds the emoji training set from an unpacked `emoji-datasource-*`
//! npm package (DESIGN §6): the base emoji of the 9 categories, skin-tone variants,
//! `Component` and exact duplicates dropped, composited on white, box-downsampled; each
//! image's subcategory is its subclass.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use nextscale::dataset::{Dataset, DatasetInfo, Split};
use serde::Deserialize;

use super::progress;

/// The classes, in label order (the `category` field of `emoji.json`).
pub const CATEGORIES: [&str; 9] = [
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
];

/// Attribution of the Google (Noto) images.
const GOOGLE_ATTRIBUTION: &str = "Noto Emoji by Google, Apache License 2.0, via emoji-datasource";
/// Attribution of the Twitter (Twemoji) images.
const TWITTER_ATTRIBUTION: &str =
    "Twemoji by Twitter, Inc. and other contributors, CC-BY-4.0, via emoji-datasource";

/// Every 10th emoji of a class (in `sort_order`) is held out.
const HELD_OUT_EVERY: usize = 10;

/// Options of `nextscale data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Unpacked `emoji-datasource-google` package (the folder holding `emoji.json`).
    #[arg(long)]
    google: PathBuf,
    /// Unpacked `emoji-datasource-twitter` package, added as a second style.
    #[arg(long)]
    twitter: Option<PathBuf>,
    /// Output data set file.
    #[arg(long, default_value = "data/emoji32.safetensors")]
    out: PathBuf,
    /// Side of the output images (must divide the 64 px sources).
    #[arg(long, default_value_t = 32)]
    size: usize,
}

/// The fields of an `emoji.json` entry we use.
#[derive(Deserialize, Debug)]
struct Entry {
    image: String,
    short_name: String,
    unified: String,
    category: String,
    subcategory: String,
    sort_order: u32,
    #[serde(default)]
    has_img_google: bool,
    #[serde(default)]
    has_img_twitter: bool,
}

/// One source style of images.
struct Style<'a> {
    package: &'a Path,
    set: &'static str,
    prefix: &'static str,
}

fn is_skin_tone_variant(unified: &str) -> bool {
    ["1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"]
        .iter()
        .any(|t| unified.to_uppercase().contains(t))
}

fn read_entries(package: &Path) -> Result<Vec<Entry>> {
    let path = package.join("emoji.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (unpack the npm package there: scripts/prepare-data.sh does)",
            path.display()
        )
    })?;
    let mut entries: Vec<Entry> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    entries.sort_by_key(|e| e.sort_order);
    Ok(entries)
}

/// Decodes a PNG, composites it on white and box-downsamples it to `size`, as RGB bytes.
fn load_image(bytes: &[u8], size: usize, path: &Path) -> Result<Vec<u8>> {
    let rgba = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .with_context(|| format!("decoding {}", path.display()))?
        .to_rgba8();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    if w != h || w % size != 0 {
        bail!(
            "{}: {w}×{h} cannot be box-downsampled to {size}",
            path.display()
        );
    }
    let f = w / size;
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let mut acc = [0.0f32; 3];
            for dy in 0..f {
                for dx in 0..f {
                    let p = rgba.get_pixel((x * f + dx) as u32, (y * f + dy) as u32).0;
                    let a = p[3] as f32 / 255.0;
                    for c in 0..3 {
                        acc[c] += p[c] as f32 * a + 255.0 * (1.0 - a);
                    }
                }
            }
            out.extend(acc.map(|v| (v / (f * f) as f32).round().clamp(0.0, 255.0) as u8));
        }
    }
    Ok(out)
}

/// Runs `nextscale data`.
pub fn run(args: DataArgs) -> Result<ExitCode> {
    let mut styles = vec![Style {
        package: &args.google,
        set: "google",
        prefix: "",
    }];
    if let Some(twitter) = &args.twitter {
        styles.push(Style {
            package: twitter,
            set: "twitter",
            prefix: "twitter:",
        });
    }
    let mut data = Dataset {
        info: DatasetInfo {
            class_names: CATEGORIES.iter().map(|s| s.to_string()).collect(),
            attribution: GOOGLE_ATTRIBUTION.to_string(),
            names: Vec::new(),
            subclass_names: Vec::new(),
            subclasses: Vec::new(),
        },
        size: args.size,
        pixels: Vec::new(),
        labels: Vec::new(),
        split: Vec::new(),
    };
    // An emoji is held out in every style once the first style holds it out.
    let mut held_out_names = HashSet::new();
    for (si, style) in styles.iter().enumerate() {
        let entries = read_entries(style.package)?;
        let kept: Vec<&Entry> = entries
            .iter()
            .filter(|e| CATEGORIES.contains(&e.category.as_str()))
            .filter(|e| !is_skin_tone_variant(&e.unified))
            .filter(|e| match style.set {
                "google" => e.has_img_google,
                _ => e.has_img_twitter,
            })
            .collect();
        let bar = progress::bar(kept.len() as u64, style.set);
        let mut seen = HashSet::new();
        let mut per_class = [0usize; CATEGORIES.len()];
        for e in kept {
            bar.inc(1);
            let path = style
                .package
                .join("img")
                .join(style.set)
                .join("64")
                .join(&e.image);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "{} lists {} but the file is missing",
                    e.short_name,
                    path.display()
                )
            })?;
            if !seen.insert(bytes.clone()) {
                continue;
            }
            let label = CATEGORIES
                .iter()
                .position(|c| *c == e.category)
                .context("category was filtered")?;
            let held_out = if si == 0 {
                per_class[label] % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
            } else {
                held_out_names.contains(&e.short_name)
            };
            if held_out {
                held_out_names.insert(e.short_name.clone());
            }
            per_class[label] += 1;
            // Subcategories, in order of first appearance, are the subclasses.
            let sub = data
                .info
                .subclass_names
                .iter()
                .position(|n| *n == e.subcategory)
                .unwrap_or_else(|| {
                    data.info.subclass_names.push(e.subcategory.clone());
                    data.info.subclass_names.len() - 1
                });
            data.info.subclasses.push(sub);
            data.pixels.extend(load_image(&bytes, args.size, &path)?);
            data.labels.push(label);
            data.split.push(if held_out {
                Split::HeldOut
            } else {
                Split::Train
            });
            data.info
                .names
                .push(format!("{}{}", style.prefix, e.short_name));
        }
        bar.finish_and_clear();
        println!("{}: {} images", style.set, per_class.iter().sum::<usize>());
        for (name, n) in CATEGORIES.iter().zip(per_class) {
            println!("  {name:<18} {n}");
        }
    }
    if args.twitter.is_some() {
        data.info.attribution = format!("{GOOGLE_ATTRIBUTION}; {TWITTER_ATTRIBUTION}");
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, data.to_bytes()?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {}: {} images ({} train, {} held-out), {} classes, {} subclasses",
        args.out.display(),
        data.len(),
        data.indices(Split::Train).len(),
        data.indices(Split::HeldOut).len(),
        data.num_classes(),
        data.info.subclass_names.len()
    );
    Ok(ExitCode::SUCCESS)
}
