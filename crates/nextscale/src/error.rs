//! Typed errors of the core. Every malformed input surfaces here, never as a panic.

/// Result alias of the core.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong when loading a model or running a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The safetensors header cannot be parsed.
    #[error("bad model file header: {0}")]
    BadHeader(String),
    /// The file ends before the data its header announces.
    #[error("model file is truncated: {0}")]
    Truncated(String),
    /// A tensor the architecture needs is absent.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// Tensors that the architecture does not use.
    #[error("unexpected tensors in model file: {}", .0.join(", "))]
    ExtraTensors(Vec<String>),
    /// A tensor has a shape other than the config implies.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape in the file.
        actual: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor has a dtype the loader does not accept for it.
    #[error("tensor `{name}` has dtype {actual}, expected {expected}")]
    DType {
        /// Tensor name.
        name: String,
        /// Dtype in the file.
        actual: String,
        /// Accepted dtypes.
        expected: &'static str,
    },
    /// The config is unparsable, has unknown fields or is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// A class label outside `0..num_classes`.
    #[error("class label {label} is out of range: the model has {num_classes} classes")]
    ClassOutOfRange {
        /// Requested label.
        label: usize,
        /// Number of classes of the model.
        num_classes: usize,
    },
    /// A class name the model does not know.
    #[error("unknown class `{0}`")]
    UnknownClass(String),
    /// An input image cannot be decoded, is empty or exceeds the decoding limits.
    #[error("bad image: {0}")]
    BadImage(String),
    /// A request option is invalid (NaN, negative, out of range, ...).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request needs the VQ-VAE encoder, which this model file was written without.
    #[error(
        "this model file has no VQ-VAE encoder (it was written with --no-encoder): it can generate, but not encode images"
    )]
    NoEncoder,
    /// The request was cancelled by the caller.
    #[error("generation aborted")]
    Aborted,
    /// The backend failed while executing or reading back a tensor.
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    /// A stable machine-readable code, shared with the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadHeader(_)
            | Error::Truncated(_)
            | Error::MissingTensor(_)
            | Error::ExtraTensors(_)
            | Error::ShapeMismatch { .. }
            | Error::DType { .. }
            | Error::Config(_) => "E_MODEL_FORMAT",
            Error::ClassOutOfRange { .. }
            | Error::UnknownClass(_)
            | Error::BadRequest(_)
            | Error::BadImage(_)
            | Error::NoEncoder => "E_BAD_REQUEST",
            Error::Aborted => "E_ABORTED",
            Error::Backend(_) => "E_BACKEND",
        }
    }
}
