//! Command-line definitions and dispatch.

mod bench;
mod convert;
mod data;
mod distill;
mod distill_data;
mod edit;
mod eval;
mod grid;
mod init;
mod inspect;
mod load;
mod metrics;
mod parity;
mod progress;
mod sample;
mod train;
mod train_classifier;
mod train_hmar;
mod train_var;
mod train_vqvae;
mod tune_sampling;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use nextscale::pipeline::Mode;
use nextscale::{ModelConfig, Sampling};

/// The model `sample` uses when `--model` is not given.
pub const DEFAULT_MODEL: &str = "web/public/models/emoji32.safetensors";

/// Next-scale (VAR) image generation on burn.
#[derive(Parser, Debug)]
#[command(name = "nextscale", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which burn device runs the model.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The flex CPU backend.
    Flex,
    /// wgpu with the graphics API it picks (Vulkan via lavapipe here).
    Wgpu,
}

/// Preview computed for each scale.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewArg {
    /// Linear Cvae → RGB map at latent resolution.
    Fast,
    /// Full VQ-VAE decode.
    Full,
}

/// Which sampler generates the tokens.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// The VAR teacher, scale by scale.
    Var,
    /// The Distilled-Decoding student, one step.
    Dd1,
    /// The Distilled-Decoding student, two steps.
    Dd2,
    /// The naive baseline: every scale from one teacher pass, tokens sampled independently.
    Parallel,
}

/// Guidance, sampling and mode options shared by `sample`, `grid`, `bench` and `eval`. Unset
/// settings come from the model's recommended sampling, else the official defaults.
#[derive(Args, Debug, Clone, Copy)]
pub struct SamplingArgs {
    /// Classifier-free guidance strength [default: the model's recommendation, else 1.5].
    #[arg(long, value_parser = cfg)]
    pub cfg: Option<f64>,
    /// Keep the k most likely tokens (at most V), 0 for all [default: the model's, else
    /// 900 capped at V].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass in [0, 1], 0 for off [default: the model's, else 0.96].
    #[arg(long, value_parser = top_p)]
    pub top_p: Option<f64>,
    /// Sampler (dd1/dd2 need a model file with a distilled student).
    #[arg(long, value_enum, default_value_t = ModeArg::Var)]
    pub mode: ModeArg,
}

/// Parses a guidance strength (`--cfg`), in the range [`Sampling::cfg_problem`] allows.
fn cfg(text: &str) -> Result<f64, String> {
    number(text, Sampling::cfg_problem)
}

/// Parses a nucleus mass (`--top-p`), in the range [`Sampling::top_p_problem`] allows.
fn top_p(text: &str) -> Result<f64, String> {
    number(text, Sampling::top_p_problem)
}

/// Parses a number that `problem` accepts.
fn number(text: &str, problem: fn(f64) -> Option<String>) -> Result<f64, String> {
    let v = text
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not a number"))?;
    problem(v).map_or(Ok(v), Err)
}

/// Parses an integer ≥ 1 (counts, steps, batches).
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("`{text}` is not an integer ≥ 1")),
    }
}

/// Parses a generation batch: an integer in 1..=[`MAX_BATCH`](nextscale::pipeline::MAX_BATCH).
fn batch_size(text: &str) -> Result<usize, String> {
    let max = nextscale::pipeline::MAX_BATCH;
    match text.parse::<usize>() {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not an integer in 1..={max}")),
    }
}

impl SamplingArgs {
    /// The settings given (a top-k at most V), the rest from `config`'s default sampling.
    pub fn resolve(&self, config: &ModelConfig) -> nextscale::Result<Sampling> {
        let default = config.default_sampling();
        Ok(Sampling {
            cfg: self.cfg.unwrap_or(default.cfg),
            top_k: match self.top_k {
                Some(k) => config.check_top_k(k)?,
                None => default.top_k,
            },
            top_p: self.top_p.unwrap_or(default.top_p),
        })
    }

    /// The core's mode.
    pub fn mode(&self) -> Mode {
        match self.mode {
            ModeArg::Var => Mode::Var,
            ModeArg::Dd1 => Mode::Dd1,
            ModeArg::Dd2 => Mode::Dd2,
            ModeArg::Parallel => Mode::Parallel,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate images of a class and write them as PNG.
    Sample(sample::SampleArgs),
    /// Edit an image: in-paint or out-paint a box or mask, optionally as another class.
    Edit(edit::EditArgs),
    /// Print a model's config, parameter counts and classes.
    Inspect {
        /// Model file (.safetensors) or fixture directory.
        path: PathBuf,
    },
    /// Check a fixture directory (shared/fixtures format) against the core.
    Parity {
        /// Fixture directory with config.json, weights.safetensors and cases.safetensors.
        dir: PathBuf,
    },
    /// Time generation per scale, transformer against decoder.
    Bench(bench::BenchArgs),
    /// Convert official VAR checkpoints (.pth or .safetensors state dicts) to a model file.
    Convert(convert::ConvertArgs),
    /// Write a model file of an official architecture (d16 … d30) with random weights.
    Init(init::InitArgs),
    /// Build the emoji training set from an unpacked emoji-datasource npm package.
    Data(data::DataArgs),
    /// Train the VQ-VAE tokenizer (resumable).
    TrainVqvae(train_vqvae::TrainVqvaeArgs),
    /// Train the VAR teacher on a trained tokenizer (resumable) and export the model file.
    TrainVar(train_var::TrainVarArgs),
    /// Train an HMAR model on a trained tokenizer: the next-scale stage, then the masked
    /// fine-tune (each resumable), and export the model file.
    TrainHmar(train_hmar::TrainHmarArgs),
    /// Run the teacher with the flow map Ψ and store (noise, tokens) pairs for `distill`.
    DistillData(distill_data::DistillDataArgs),
    /// Train the Distilled-Decoding student from the teacher's pairs (resumable).
    Distill(distill::DistillArgs),
    /// Train the evaluator's classifier on the real training split.
    TrainClassifier(train_classifier::TrainClassifierArgs),
    /// Score a generator: conditional accuracy, FD, KID, precision/recall, memorisation.
    Eval(eval::EvalArgs),
    /// Write one row of samples per class as a single PNG.
    Grid(grid::GridArgs),
    /// Score a grid of cfg × top-k × top-p and optionally store the best in the model file.
    TuneSampling(tune_sampling::TuneSamplingArgs),
}

/// Exit code of a command line that does not parse (clap's, and the BSD `EX_USAGE` custom).
const USAGE: u8 = 2;

/// Parses the command line and runs it. A command line that does not parse prints one line
/// and exits 2; a run that fails prints its error chain on one line and exits 1.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", usage_line(&e));
            return ExitCode::from(USAGE);
        }
    };
    let result = match cli.command {
        Command::Sample(args) => sample::run(args),
        Command::Edit(args) => edit::run(args),
        Command::Inspect { path } => inspect::run(&path),
        Command::Parity { dir } => parity::run(&dir),
        Command::Bench(args) => bench::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Init(args) => init::run(args),
        Command::Data(args) => data::run(args),
        Command::TrainVqvae(args) => train_vqvae::run(args),
        Command::TrainVar(args) => train_var::run(args),
        Command::TrainHmar(args) => train_hmar::run(args),
        Command::DistillData(args) => distill_data::run(args),
        Command::Distill(args) => distill::run(args),
        Command::TrainClassifier(args) => train_classifier::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Grid(args) => grid::run(args),
        Command::TuneSampling(args) => tune_sampling::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Clap's error as one line: its first paragraph (the error, and the arguments it names),
/// then where the usage is.
fn usage_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = one_line(rendered.split("\n\n").next().unwrap_or_default());
    let command = std::env::args()
        .nth(1)
        .filter(|a| Cli::command().find_subcommand(a).is_some())
        .map_or("nextscale".to_string(), |sub| format!("nextscale {sub}"));
    format!("{first} (see `{command} --help`)")
}

/// A message on one line: every run of whitespace, line breaks included, becomes one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
