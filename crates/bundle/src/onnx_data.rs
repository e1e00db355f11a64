//! The external data files an ONNX model refers to.
//!
//! PyTorch's default `torch.onnx.export` writes the weights next to the model
//! (`model.onnx.data`), and each tensor stored there names its file in
//! `TensorProto.external_data` under the key `location`. A bundle must carry those files
//! and hash them like the model, so staging reads the locations out of the model file.
//!
//! This is a minimal reader of the protobuf wire format that follows only the fields that
//! can hold tensors (graph initializers, node attributes, subgraphs, functions) and reads
//! nothing else: the bundle crate does not need an ONNX library. It is a parser of
//! untrusted bytes: lengths are checked against the buffer, nesting is bounded, and it
//! allocates only the locations it returns.

/// Deepest nesting of subgraphs (If/Loop/Scan bodies) followed.
const MAX_GRAPH_DEPTH: usize = 32;
/// Most distinct locations one model may name.
const MAX_LOCATIONS: usize = 1024;

/// Every distinct `location` of the model's externally stored tensors, in order of first
/// appearance. Fails (with a reason) when the bytes are not a well-formed protobuf along
/// the fields it follows.
pub(crate) fn external_data_locations(model: &[u8]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for field in Fields::new(model) {
        match field? {
            // ModelProto.graph
            (7, Value::Bytes(graph)) => scan_graph(graph, 0, &mut found)?,
            // ModelProto.functions
            (25, Value::Bytes(function)) => scan_function(function, 0, &mut found)?,
            _ => {}
        }
    }
    Ok(found)
}

fn scan_graph(bytes: &[u8], depth: usize, found: &mut Vec<String>) -> Result<(), String> {
    if depth > MAX_GRAPH_DEPTH {
        return Err(format!("subgraphs nest deeper than {MAX_GRAPH_DEPTH} levels"));
    }
    for field in Fields::new(bytes) {
        match field? {
            // GraphProto.node
            (1, Value::Bytes(node)) => scan_node(node, depth, found)?,
            // GraphProto.initializer
            (5, Value::Bytes(tensor)) => scan_tensor(tensor, found)?,
            // GraphProto.sparse_initializer
            (15, Value::Bytes(sparse)) => scan_sparse(sparse, found)?,
            _ => {}
        }
    }
    Ok(())
}

fn scan_function(bytes: &[u8], depth: usize, found: &mut Vec<String>) -> Result<(), String> {
    for field in Fields::new(bytes) {
        // FunctionProto.node
        if let (7, Value::Bytes(node)) = field? {
            scan_node(node, depth, found)?;
        }
    }
    Ok(())
}

fn scan_node(bytes: &[u8], depth: usize, found: &mut Vec<String>) -> Result<(), String> {
    for field in Fields::new(bytes) {
        // NodeProto.attribute
        if let (5, Value::Bytes(attribute)) = field? {
            for field in Fields::new(attribute) {
                match field? {
                    // AttributeProto.t, .tensors
                    (5 | 10, Value::Bytes(tensor)) => scan_tensor(tensor, found)?,
                    // AttributeProto.g, .graphs
                    (6 | 11, Value::Bytes(graph)) => scan_graph(graph, depth + 1, found)?,
                    // AttributeProto.sparse_tensor, .sparse_tensors
                    (22 | 23, Value::Bytes(sparse)) => scan_sparse(sparse, found)?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn scan_sparse(bytes: &[u8], found: &mut Vec<String>) -> Result<(), String> {
    for field in Fields::new(bytes) {
        // SparseTensorProto.values, .indices
        if let (1 | 2, Value::Bytes(tensor)) = field? {
            scan_tensor(tensor, found)?;
        }
    }
    Ok(())
}

fn scan_tensor(bytes: &[u8], found: &mut Vec<String>) -> Result<(), String> {
    for field in Fields::new(bytes) {
        // TensorProto.external_data: StringStringEntryProto { key = 1, value = 2 }
        if let (13, Value::Bytes(entry)) = field? {
            let (mut key, mut value) = (None, None);
            for field in Fields::new(entry) {
                match field? {
                    (1, Value::Bytes(k)) => key = Some(k),
                    (2, Value::Bytes(v)) => value = Some(v),
                    _ => {}
                }
            }
            if key == Some(b"location".as_slice()) {
                let location = std::str::from_utf8(value.unwrap_or_default())
                    .map_err(|_| "an external data location is not UTF-8".to_owned())?;
                if !found.iter().any(|f| f == location) {
                    if found.len() >= MAX_LOCATIONS {
                        return Err(format!("more than {MAX_LOCATIONS} external data files"));
                    }
                    found.push(location.to_owned());
                }
            }
        }
    }
    Ok(())
}

/// One field's payload.
enum Value<'a> {
    /// Varint, fixed32 or fixed64: not followed.
    Scalar,
    /// A length-delimited payload: a string, bytes or an embedded message.
    Bytes(&'a [u8]),
}

/// The fields of one message, in wire order.
struct Fields<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, failed: false }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("a varint runs past the end")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is longer than 10 bytes".to_owned())
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err("a field runs past the end of its message".to_owned());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Result<(u64, Value<'a>), String> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Scalar
            }
            1 => {
                self.skip(8)?;
                Value::Scalar
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "a length overflows".to_owned())?;
                Value::Bytes(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Value::Scalar
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.bytes.is_empty() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(field: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(field << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn external_tensor(location: &str) -> Vec<u8> {
        let mut entry = bytes_field(1, b"location");
        entry.extend(bytes_field(2, location.as_bytes()));
        let mut tensor = bytes_field(8, b"weight"); // TensorProto.name
        tensor.extend(bytes_field(13, &entry));
        tensor.extend([14 << 3, 1]); // data_location = EXTERNAL
        tensor
    }

    #[test]
    fn finds_initializers_attributes_and_subgraphs() {
        let mut graph = bytes_field(5, &external_tensor("model.onnx.data"));
        graph.extend(bytes_field(5, &external_tensor("model.onnx.data")));
        let mut inner = bytes_field(5, &external_tensor("loop.bin"));
        inner = bytes_field(6, &inner); // AttributeProto.g
        let mut attribute = bytes_field(5, &external_tensor("const.bin"));
        attribute.extend(inner);
        graph.extend(bytes_field(1, &bytes_field(5, &attribute)));
        let mut model = vec![8, 9]; // ir_version = 9
        model.extend(bytes_field(7, &graph));
        assert_eq!(external_data_locations(&model).unwrap(), ["model.onnx.data", "const.bin", "loop.bin"]);
    }

    #[test]
    fn inline_models_name_nothing() {
        let mut tensor = bytes_field(8, b"w");
        tensor.extend(bytes_field(9, &[0u8; 16])); // raw_data
        let model = bytes_field(7, &bytes_field(5, &tensor));
        assert!(external_data_locations(&model).unwrap().is_empty());
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let model = bytes_field(7, &external_tensor("a.bin"));
        for cut in 0..model.len() {
            let _ = external_data_locations(&model[..cut]);
        }
        assert!(external_data_locations(&[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(external_data_locations(&[0x0b]).is_err()); // group wire type
        // Deep nesting is bounded.
        let mut graph = bytes_field(5, &external_tensor("deep.bin"));
        for _ in 0..40 {
            graph = bytes_field(1, &bytes_field(5, &bytes_field(6, &graph)));
        }
        let err = external_data_locations(&bytes_field(7, &graph)).unwrap_err();
        assert!(err.contains("nest"), "{err}");
    }
}
