//! Reading model files: safetensors with the official key names, validated tensor by tensor,
//! and the [`ParamSource`] every module is built from (loaded weights or a seeded random init).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::{Error, Result};

/// Tensor-name prefix of the VQ-VAE.
pub const VAE_PREFIX: &str = "vae.";
/// Tensor-name prefix of the VAR transformer.
pub const VAR_PREFIX: &str = "var.";
/// Tensor-name prefix of the HMAR transformer.
pub const HMAR_PREFIX: &str = "hmar.";
/// Tensor-name prefix of the Distilled-Decoding student.
pub const DD_PREFIX: &str = "dd.";
/// Tensor-name prefix of the evaluator's classifier.
pub const CLASSIFIER_PREFIX: &str = "classifier.";

/// Leaf names of buffers the official code saves but which the config fully determines.
pub const DERIVED_BUFFERS: [&str; 4] = [
    "attn_bias_for_masking",
    "lvl_1L",
    "zero_k_bias",
    "ema_vocab_hit_SV",
];

/// True for official buffers that a model file does not need.
pub fn is_derived_buffer(name: &str) -> bool {
    DERIVED_BUFFERS.contains(&name.rsplit('.').next().unwrap_or(name))
}

/// A parsed safetensors file, borrowed from its bytes.
pub struct WeightFile<'a> {
    tensors: SafeTensors<'a>,
    metadata: HashMap<String, String>,
}

impl<'a> WeightFile<'a> {
    /// Parses and validates the header and every tensor's byte range.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(map_st_error)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(map_st_error)?;
        Ok(Self {
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// A value of the `__metadata__` map.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.names().into_iter().map(String::from).collect();
        names.sort();
        names
    }

    /// True when a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.tensor(name).is_ok()
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// Checks that a tensor is stored as f32, f16 or bf16.
    pub fn check_float(&self, name: &str) -> Result<()> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| Error::MissingTensor(name.to_string()))?;
        match view.dtype() {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
            other => Err(Error::DType {
                name: name.to_string(),
                actual: format!("{other:?}"),
                expected: "F32, F16 or BF16",
            }),
        }
    }

    /// Reads a float tensor (f32, f16 or bf16) as f32 values with its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| Error::MissingTensor(name.to_string()))?;
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => {
                let table = f16_table();
                data.chunks_exact(2)
                    .map(|b| table[u16::from_le_bytes([b[0], b[1]]) as usize])
                    .collect()
            }
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::DType {
                    name: name.to_string(),
                    actual: format!("{other:?}"),
                    expected: "F32, F16 or BF16",
                });
            }
        };
        Ok((values, view.shape().to_vec()))
    }

    /// Reads an integer tensor (i64 or i32) as i64 values with its shape.
    pub fn read_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| Error::MissingTensor(name.to_string()))?;
        let data = view.data();
        let values = match view.dtype() {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunk of 8")))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("chunk of 4")) as i64)
                .collect(),
            other => {
                return Err(Error::DType {
                    name: name.to_string(),
                    actual: format!("{other:?}"),
                    expected: "I64 or I32",
                });
            }
        };
        Ok((values, view.shape().to_vec()))
    }
}

/// Every f16 value as f32, built once: a table lookup widens an f16 file's weights several
/// times faster than converting each value, which on wasm (no F16C) is a software routine.
fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| half::f16::from_bits(bits).to_f32())
            .collect()
    })
}

/// Transposes a row-major `[rows, cols]` matrix in tiles that stay in cache (a straight
/// walk of the destination reads the source a column at a time, which took most of the
/// loading time of a VAR-d16 file in wasm).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0f32; values.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

fn map_st_error(e: SafeTensorError) -> Error {
    match e {
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidTensorView(..) => {
            Error::Truncated(e.to_string())
        }
        other => Error::BadHeader(other.to_string()),
    }
}

/// How a parameter is initialised when it is not loaded.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element equal to this value.
    Const(f32),
}

enum Mode<'w, 'a> {
    Load(&'w WeightFile<'a>),
    Random(Box<ChaCha8Rng>),
    /// Records names and shapes; parameters are 1-element placeholders.
    Spec(BTreeMap<String, Vec<usize>>),
}

/// Where module parameters come from: a weight file (validated) or a seeded random init.
///
/// Modules ask for each parameter by its official name and shape; the source checks the
/// file, converts the dtype and places the tensor on the device. [`ParamSource::finish`]
/// then rejects tensors nobody asked for.
pub struct ParamSource<'w, 'a> {
    device: Device,
    mode: Mode<'w, 'a>,
    prefix: String,
    used: BTreeSet<String>,
    /// Parameter ids to reuse by full name (resuming training keeps optimizer state).
    ids: BTreeMap<String, u64>,
    names: ParamNames,
}

/// Where each parameter of a built module came from: its full official name, and whether it
/// is stored transposed (a `nn.Linear` weight kept `[in, out]`).
#[derive(Debug, Clone, Default)]
pub struct ParamNames {
    by_id: HashMap<ParamId, (String, bool)>,
}

impl ParamNames {
    /// The official name of a parameter and whether it is stored transposed.
    pub fn get(&self, id: &ParamId) -> Option<(&str, bool)> {
        self.by_id.get(id).map(|(n, t)| (n.as_str(), *t))
    }

    /// `full name → id` of every parameter, to rebuild a module with the same ids.
    pub fn ids(&self) -> BTreeMap<String, u64> {
        self.by_id
            .iter()
            .map(|(id, (n, _))| (n.clone(), id.val()))
            .collect()
    }

    /// Adds the names of another source (e.g. a second model prefix).
    pub fn extend(&mut self, other: ParamNames) {
        self.by_id.extend(other.by_id);
    }
}

impl<'w, 'a> ParamSource<'w, 'a> {
    /// Loads parameters from `file`, names prefixed with `prefix` (e.g. `"var."`).
    pub fn load(file: &'w WeightFile<'a>, prefix: &str, device: &Device) -> Self {
        Self {
            device: device.clone(),
            mode: Mode::Load(file),
            prefix: prefix.to_string(),
            used: BTreeSet::new(),
            ids: BTreeMap::new(),
            names: ParamNames::default(),
        }
    }

    /// Draws parameters at random from a seeded generator.
    pub fn random(seed: u64, device: &Device) -> Self {
        Self {
            device: device.clone(),
            mode: Mode::Random(Box::new(ChaCha8Rng::seed_from_u64(seed))),
            prefix: String::new(),
            used: BTreeSet::new(),
            ids: BTreeMap::new(),
            names: ParamNames::default(),
        }
    }

    /// Prefixes every name with `prefix` (e.g. `"vae."`), as a loading source does.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Gives parameters these ids by full name (from [`ParamNames::ids`]), so that a
    /// resumed training run matches its saved optimizer state.
    pub fn with_ids(mut self, ids: BTreeMap<String, u64>) -> Self {
        self.ids = ids;
        self
    }

    /// The names of every parameter built so far, by id.
    pub fn names(&self) -> &ParamNames {
        &self.names
    }

    /// Records the name and shape of every parameter a module asks for, allocating nothing
    /// of size; read the result with [`ParamSource::into_spec`].
    pub fn spec(prefix: &str, device: &Device) -> Self {
        Self {
            device: device.clone(),
            mode: Mode::Spec(BTreeMap::new()),
            prefix: prefix.to_string(),
            used: BTreeSet::new(),
            ids: BTreeMap::new(),
            names: ParamNames::default(),
        }
    }

    /// The recorded `name → shape` map of a [`ParamSource::spec`] source (empty otherwise).
    pub fn into_spec(self) -> BTreeMap<String, Vec<usize>> {
        match self.mode {
            Mode::Spec(spec) => spec,
            _ => BTreeMap::new(),
        }
    }

    /// The device parameters are placed on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn values(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let numel: usize = shape.iter().product();
        match &mut self.mode {
            Mode::Load(file) => {
                let (values, actual) = file.read_f32(&full)?;
                if actual != shape {
                    return Err(Error::ShapeMismatch {
                        name: full,
                        actual,
                        expected: shape.to_vec(),
                    });
                }
                self.used.insert(full);
                Ok(values)
            }
            Mode::Spec(spec) => {
                spec.insert(full, shape.to_vec());
                Ok(vec![0.0])
            }
            Mode::Random(rng) => Ok(match init {
                Init::Normal(std) => {
                    let normal = Normal::new(0.0f32, std as f32)
                        .map_err(|e| Error::Config(format!("init of {full}: {e}")))?;
                    (0..numel).map(|_| normal.sample(rng.as_mut())).collect()
                }
                Init::Zeros => vec![0.0; numel],
                Init::Ones => vec![1.0; numel],
                Init::Const(v) => vec![v; numel],
            }),
        }
    }

    /// A parameter of the given shape.
    pub fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<D>>> {
        let values = self.values(name, &shape, init)?;
        let shape = if values.len() == 1 { [1; D] } else { shape };
        let tensor = self.upload(values, shape);
        Ok(self.register(name, tensor, false))
    }

    /// Wraps a tensor as a parameter, reusing a given id, and records its name.
    fn register<const D: usize>(
        &mut self,
        name: &str,
        tensor: Tensor<D>,
        transposed: bool,
    ) -> Param<Tensor<D>> {
        let full = format!("{}{name}", self.prefix);
        let param = Param::from_tensor(tensor);
        let param = match self.ids.get(&full) {
            Some(&id) => {
                let (_, value, mapper) = param.consume();
                Param::from_mapped_value(ParamId::from(id), value, mapper)
            }
            None => param,
        };
        self.names.by_id.insert(param.id, (full, transposed));
        param
    }

    /// A PyTorch `nn.Linear` weight stored `[out, in]`, returned transposed as `[in, out]`.
    pub fn linear_weight(
        &mut self,
        name: &str,
        d_out: usize,
        d_in: usize,
        init: Init,
    ) -> Result<Param<Tensor<2>>> {
        self.linear_weight_as(name, d_out, d_in, init, |values| {
            transpose(values, d_out, d_in)
        })
    }

    /// A PyTorch `nn.Linear` weight stored `[out, in]`, as an `[in, out]` tensor whose values
    /// `arrange` orders from the stored ones (`d_out·d_in` of them; a spec source's
    /// one-value placeholder stays as it is).
    pub fn linear_weight_as(
        &mut self,
        name: &str,
        d_out: usize,
        d_in: usize,
        init: Init,
        arrange: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<Param<Tensor<2>>> {
        let values = self.values(name, &[d_out, d_in], init)?;
        if values.len() == 1 {
            let tensor = self.upload(values, [1, 1]);
            return Ok(self.register(name, tensor, true));
        }
        let tensor = self.upload(arrange(&values), [d_in, d_out]);
        Ok(self.register(name, tensor, true))
    }

    fn upload<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// Checks that no tensor under this prefix went unused, other than the official
    /// derived buffers.
    pub fn finish(self) -> Result<()> {
        let Mode::Load(file) = self.mode else {
            return Ok(());
        };
        let extra: Vec<String> = file
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix) && !self.used.contains(n))
            .filter(|n| !is_derived_buffer(n))
            .collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(Error::ExtraTensors(extra))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn file_with(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, Some(HashMap::new())).unwrap()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn loads_and_transposes_linear() {
        let bytes = file_with(&[(
            "var.w",
            Dtype::F32,
            vec![2, 3],
            f32_bytes(&[1., 2., 3., 4., 5., 6.]),
        )]);
        let file = WeightFile::parse(&bytes).unwrap();
        let mut src = ParamSource::load(&file, "var.", &Device::flex());
        let w = src.linear_weight("w", 2, 3, Init::Zeros).unwrap();
        let v = w.val().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![1., 4., 2., 5., 3., 6.]);
        src.finish().unwrap();
    }

    #[test]
    fn the_f16_table_is_the_conversion() {
        let table = f16_table();
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            assert_eq!(
                table[bits as usize].to_bits(),
                want.to_bits(),
                "{bits:#06x}"
            );
        }
    }

    #[test]
    fn tiled_transpose_matches_the_definition() {
        for (rows, cols) in [(1, 1), (3, 70), (33, 31), (64, 96)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&values, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], values[r * cols + c]);
                }
            }
        }
    }

    #[test]
    fn reads_f16() {
        let h: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect();
        let bytes = file_with(&[("a", Dtype::F16, vec![2], h)]);
        let file = WeightFile::parse(&bytes).unwrap();
        assert_eq!(file.read_f32("a").unwrap().0, vec![1.5, -2.0]);
    }

    #[test]
    fn errors_are_typed() {
        let bytes = file_with(&[
            ("p.a", Dtype::F32, vec![2], f32_bytes(&[1., 2.])),
            ("p.b", Dtype::I64, vec![1], 7i64.to_le_bytes().to_vec()),
            ("p.extra", Dtype::F32, vec![1], f32_bytes(&[1.])),
        ]);
        let file = WeightFile::parse(&bytes).unwrap();
        let dev = Device::flex();
        let mut src = ParamSource::load(&file, "p.", &dev);
        assert!(matches!(
            src.param("a", [3], Init::Zeros),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            src.param("b", [1], Init::Zeros),
            Err(Error::DType { .. })
        ));
        assert!(matches!(
            src.param("missing", [1], Init::Zeros),
            Err(Error::MissingTensor(n)) if n == "p.missing"
        ));
        src.param("a", [2], Init::Zeros).unwrap();
        assert!(matches!(src.finish(), Err(Error::ExtraTensors(v)) if v == vec!["p.b", "p.extra"]));
    }

    #[test]
    fn truncated_and_garbage_files() {
        let bytes = file_with(&[("a", Dtype::F32, vec![4], f32_bytes(&[1., 2., 3., 4.]))]);
        assert!(matches!(
            WeightFile::parse(&bytes[..bytes.len() - 3]),
            Err(Error::Truncated(_))
        ));
        assert!(matches!(
            WeightFile::parse(b"garbage!"),
            Err(Error::BadHeader(_))
        ));
        assert!(matches!(WeightFile::parse(&[]), Err(Error::BadHeader(_))));
        let mut bad = bytes.clone();
        bad[8] = b'#';
        assert!(matches!(WeightFile::parse(&bad), Err(Error::BadHeader(_))));
    }
}
