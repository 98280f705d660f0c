//! Export of a module's parameters under their official names (`vae.*`, `var.*`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::weights::ParamNames;

/// Tensors by official name: shape and row-major f32 values, as PyTorch lays them out.
pub type StateDict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

struct Collect<'a> {
    names: &'a ParamNames,
    out: StateDict,
    unnamed: usize,
    unreadable: Vec<String>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((name, transposed)) = self.names.get(&param.id) else {
            self.unnamed += 1;
            return;
        };
        let value = if transposed && D == 2 {
            param.val().transpose()
        } else {
            param.val()
        };
        let shape = value.dims().to_vec();
        match value.into_data().try_to_vec::<f32>() {
            Ok(values) => {
                self.out.insert(name.to_string(), (shape, values));
            }
            Err(_) => self.unreadable.push(name.to_string()),
        }
    }
}

/// Every float parameter of `module` by its official name (linear weights back to
/// `[out, in]`). Errors if a parameter was not built through a named source.
pub fn state_dict<M: Module>(module: &M, names: &ParamNames) -> Result<StateDict> {
    let mut collect = Collect {
        names,
        out: StateDict::new(),
        unnamed: 0,
        unreadable: Vec::new(),
    };
    module.visit(&mut collect);
    if collect.unnamed > 0 {
        return Err(Error::Config(format!(
            "{} parameters have no recorded name",
            collect.unnamed
        )));
    }
    if !collect.unreadable.is_empty() {
        return Err(Error::Backend(format!(
            "could not read back {:?}",
            collect.unreadable
        )));
    }
    Ok(collect.out)
}
