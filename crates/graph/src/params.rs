//! Reading a node's `parameters` (Seldon's `{name, value, type}`), with the field in errors.

use palisade_bundle::graph::{Parameter, ParameterType};

use crate::GraphError;

/// A node's parameters, read one by one; [`Params::finish`] refuses those nobody read.
pub(crate) struct Params<'a> {
    path: &'a str,
    list: &'a [Parameter],
    used: Vec<bool>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(path: &'a str, list: &'a [Parameter]) -> Params<'a> {
        Params { path, list, used: vec![false; list.len()] }
    }

    fn field(&self, i: usize) -> String {
        format!("{}.parameters[{i}]", self.path)
    }

    fn find(&mut self, name: &str) -> Option<(usize, &'a Parameter)> {
        let i = self.list.iter().position(|p| p.name == name)?;
        self.used[i] = true;
        Some((i, &self.list[i]))
    }

    /// A number (`INT`, `FLOAT`, `DOUBLE`, or text that reads as one).
    pub(crate) fn number(&mut self, name: &str) -> Result<Option<f64>, GraphError> {
        let Some((i, p)) = self.find(name) else { return Ok(None) };
        if matches!(p.kind, ParameterType::Bool | ParameterType::Json) {
            return Err(GraphError::new(self.field(i), format!("`{name}` is a number: give `type: FLOAT`")));
        }
        match p.value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(GraphError::new(self.field(i), format!("`{name}` must be a number, not `{}`", p.value))),
        }
    }

    /// Text.
    pub(crate) fn text(&mut self, name: &str) -> Option<&'a str> {
        self.find(name).map(|(_, p)| p.value.as_str())
    }

    /// A list of names: a JSON array of strings, or text separated by commas.
    pub(crate) fn names(&mut self, name: &str) -> Result<Option<Vec<String>>, GraphError> {
        let Some((i, p)) = self.find(name) else { return Ok(None) };
        let list: Vec<String> = if p.kind == ParameterType::Json || p.value.trim_start().starts_with('[') {
            serde_json::from_str(&p.value).map_err(|e| {
                GraphError::new(self.field(i), format!("`{name}` must be a JSON list of names: {e}"))
            })?
        } else {
            p.value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        if list.is_empty() {
            return Err(GraphError::new(self.field(i), format!("`{name}` lists nothing")));
        }
        Ok(Some(list))
    }

    /// A list of numbers: a JSON array, or text separated by commas.
    pub(crate) fn numbers(&mut self, name: &str) -> Result<Option<Vec<f64>>, GraphError> {
        let Some((i, p)) = self.find(name) else { return Ok(None) };
        let text = p.value.trim().trim_start_matches('[').trim_end_matches(']');
        let parsed: Result<Vec<f64>, _> = text.split(',').map(|s| s.trim().parse::<f64>()).collect();
        match parsed {
            Ok(list) if !list.is_empty() && list.iter().all(|v| v.is_finite()) => Ok(Some(list)),
            _ => Err(GraphError::new(self.field(i), format!("`{name}` must list numbers, e.g. `[90, 10]`"))),
        }
    }

    /// The parameters not read, as the error naming the first.
    pub(crate) fn finish(&self, known: &str) -> Result<(), GraphError> {
        match self.used.iter().position(|u| !u) {
            None => Ok(()),
            Some(i) => Err(GraphError::new(
                format!("{}.name", self.field(i)),
                format!("unknown parameter `{}`; this node takes {known}", self.list[i].name),
            )),
        }
    }

    /// Every parameter as a (name, value) pair, all marked read (RENAME's map).
    pub(crate) fn pairs(&mut self) -> Vec<(String, String)> {
        self.used.iter_mut().for_each(|u| *u = true);
        self.list.iter().map(|p| (p.name.clone(), p.value.clone())).collect()
    }
}
