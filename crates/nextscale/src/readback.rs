//! Reading tensors back to the host, asynchronously, so that the same code runs in a browser
//! on WebGPU (where a blocking read panics).

use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};

/// Reads a float tensor back to the host asynchronously.
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Backend(format!("{e:?}")))
}

/// Reads an integer tensor back to the host asynchronously.
pub async fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    Ok(data.iter::<i64>().collect())
}
