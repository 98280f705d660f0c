//! What the training commands share: the run directory with its resumable checkpoint
//! (model tensors by official name, parameter ids and step in the metadata, optimizer
//! state beside it), the loss log (CSV and a PNG plot) and image grids.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::optim::ModuleOptimizer;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::preview::RgbaImage;
use nextscale::train::StateDict;
use nextscale::weights::WeightFile;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::convert::{StoreDtype, state_bytes};

/// Metadata key of the [`TrainState`] JSON in a checkpoint.
pub const TRAIN_METADATA_KEY: &str = "nextscale.train";

/// Where a training run resumes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
    /// Parameter ids by full name, matching the saved optimizer state.
    pub param_ids: BTreeMap<String, u64>,
}

/// A training run's output directory.
pub struct RunDir {
    dir: PathBuf,
}

/// A checkpoint read back: its tensors' bytes, the config JSON and the train state.
pub struct Checkpoint {
    /// The safetensors bytes.
    pub bytes: Vec<u8>,
    /// The model config JSON.
    pub config_json: String,
    /// Step and parameter ids.
    pub state: TrainState,
}

impl RunDir {
    /// Creates the directory if needed.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// A file in the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.path("checkpoint.safetensors")
    }

    fn optimizer_path(&self) -> PathBuf {
        self.path("optimizer.bpk")
    }

    /// Writes model tensors and optimizer state (each through a temporary file, so an
    /// interrupted save leaves the previous checkpoint intact).
    pub fn save(
        &self,
        tensors: &StateDict,
        config_json: &str,
        state: &TrainState,
        optim: &ModuleOptimizer,
    ) -> Result<()> {
        let metadata = HashMap::from([
            (CONFIG_METADATA_KEY.to_string(), config_json.to_string()),
            (
                TRAIN_METADATA_KEY.to_string(),
                serde_json::to_string(state)?,
            ),
        ]);
        let bytes = state_bytes(tensors, metadata, StoreDtype::F32)?;
        let tmp_optim = self.path("optimizer.bpk.tmp");
        optim
            .save(&tmp_optim)
            .map_err(|e| anyhow::anyhow!("saving optimizer state: {e:?}"))?;
        let tmp = self.path("checkpoint.safetensors.tmp");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp_optim, self.optimizer_path())?;
        std::fs::rename(&tmp, self.checkpoint_path())?;
        Ok(())
    }

    /// The saved checkpoint, if there is one.
    pub fn load(&self) -> Result<Option<Checkpoint>> {
        let path = self.checkpoint_path();
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let file = WeightFile::parse(&bytes)?;
        let config_json = file
            .metadata(CONFIG_METADATA_KEY)
            .context("checkpoint has no config")?
            .to_string();
        let state: TrainState = serde_json::from_str(
            file.metadata(TRAIN_METADATA_KEY)
                .context("checkpoint has no train state")?,
        )?;
        Ok(Some(Checkpoint {
            bytes,
            config_json,
            state,
        }))
    }

    /// Restores the optimizer state saved with the checkpoint.
    pub fn load_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        optim
            .load(self.optimizer_path())
            .map_err(|e| anyhow::anyhow!("loading optimizer state: {e:?}"))
    }
}

/// Reads every tensor of a safetensors file under `prefix` as f32.
pub fn read_state(bytes: &[u8], prefix: &str) -> Result<StateDict> {
    let file = WeightFile::parse(bytes)?;
    let mut out = StateDict::new();
    for name in file.names().into_iter().filter(|n| n.starts_with(prefix)) {
        let (values, shape) = file.read_f32(&name)?;
        out.insert(name, (shape, values));
    }
    Ok(out)
}

/// The loss log: `loss.csv` with a header, rewritten up to the resumed step, and a plot.
pub struct LossLog {
    csv: PathBuf,
    png: PathBuf,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<f64>)>,
}

impl LossLog {
    /// Opens the log of a run, keeping rows before `start_step`.
    pub fn open(run: &RunDir, columns: &[&str], start_step: usize) -> Result<Self> {
        let csv = run.path("loss.csv");
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&csv) {
            for line in text.lines().skip(1) {
                let mut fields = line.split(',');
                let Some(Ok(step)) = fields.next().map(str::parse::<usize>) else {
                    continue;
                };
                let values: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
                if step < start_step && values.len() == columns.len() {
                    rows.push((step, values));
                }
            }
        }
        Ok(Self {
            csv,
            png: run.path("loss.png"),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        })
    }

    /// Adds a row.
    pub fn push(&mut self, step: usize, values: Vec<f64>) {
        self.rows.push((step, values));
    }

    /// Writes the CSV and the plot (each column a line, smoothed over 20 steps).
    pub fn write(&self) -> Result<()> {
        let mut text = format!("step,{}\n", self.columns.join(","));
        for (step, values) in &self.rows {
            let v: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
            text.push_str(&format!("{step},{}\n", v.join(",")));
        }
        std::fs::write(&self.csv, text)
            .with_context(|| format!("writing {}", self.csv.display()))?;
        self.plot()
            .map_err(|e| anyhow::anyhow!("plotting {}: {e}", self.png.display()))
    }

    fn plot(&self) -> std::result::Result<(), Box<dyn std::error::Error>> {
        if self.rows.len() < 2 {
            return Ok(());
        }
        let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
        let root = BitMapBackend::new(&self.png, (800, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let last = self.rows.last().map(|r| r.0).unwrap_or(1) as f64;
        let smooth = |col: usize| -> Vec<(f64, f64)> {
            self.rows
                .iter()
                .enumerate()
                .map(|(i, (step, _))| {
                    let from = i.saturating_sub(19);
                    let window = &self.rows[from..=i];
                    let mean = window.iter().map(|r| r.1[col]).sum::<f64>() / window.len() as f64;
                    (*step as f64, mean)
                })
                .collect()
        };
        let series: Vec<Vec<(f64, f64)>> = (0..self.columns.len()).map(smooth).collect();
        let top = series
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::MIN, f64::max)
            .max(1e-6);
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(0.0..last, 0.0..top * 1.05)?;
        chart
            .configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (points, color) in series.into_iter().zip(colors.iter().cycle()) {
            chart.draw_series(LineSeries::new(points, color))?;
        }
        root.present()?;
        Ok(())
    }
}

/// Writes images as a grid of `cols` columns, each upscaled by `zoom`, as one PNG.
pub fn write_grid(path: &Path, images: &[RgbaImage], cols: usize, zoom: usize) -> Result<()> {
    let Some(first) = images.first() else {
        return Ok(());
    };
    let (w, h) = (first.width * zoom, first.height * zoom);
    let rows = images.len().div_ceil(cols);
    let mut grid = image::RgbaImage::from_pixel(
        (cols * (w + 2)) as u32,
        (rows * (h + 2)) as u32,
        image::Rgba([255, 255, 255, 255]),
    );
    for (i, img) in images.iter().enumerate() {
        let (gx, gy) = ((i % cols) * (w + 2) + 1, (i / cols) * (h + 2) + 1);
        for y in 0..h {
            for x in 0..w {
                let p = ((y / zoom) * img.width + x / zoom) * 4;
                let px = [img.pixels[p], img.pixels[p + 1], img.pixels[p + 2], 255];
                grid.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgba(px));
            }
        }
    }
    grid.save(path)
        .with_context(|| format!("writing {}", path.display()))
}
