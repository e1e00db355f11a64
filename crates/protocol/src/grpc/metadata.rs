//! Server and model metadata in gRPC form.

use palisade_core::{ModelSignature, TensorSpec};

use super::inference::model_metadata_response::TensorMetadata;
use super::inference::{ModelMetadataResponse, ServerMetadataResponse};
use crate::v2;

/// `ServerMetadata`: the server's name, version and protocol extensions.
pub fn server_metadata_response(
    name: impl Into<String>,
    version: impl Into<String>,
    extensions: Vec<String>,
) -> ServerMetadataResponse {
    ServerMetadataResponse { name: name.into(), version: version.into(), extensions }
}

/// `ModelMetadata`: a model's versions, platform and signature. Dynamic dimensions are `-1`.
///
/// The gRPC message has no `parameters`, so class labels and model parameters that REST
/// metadata carries are not sent.
pub fn model_metadata_response(
    name: impl Into<String>,
    versions: Vec<String>,
    platform: impl Into<String>,
    signature: &ModelSignature,
) -> ModelMetadataResponse {
    ModelMetadataResponse {
        name: name.into(),
        versions,
        platform: platform.into(),
        inputs: signature.inputs.iter().map(TensorMetadata::from).collect(),
        outputs: signature.outputs.iter().map(TensorMetadata::from).collect(),
    }
}

impl From<&TensorSpec> for TensorMetadata {
    fn from(spec: &TensorSpec) -> Self {
        TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str().to_owned(),
            shape: spec.shape_i64(),
        }
    }
}

impl From<v2::ServerMetadata> for ServerMetadataResponse {
    fn from(m: v2::ServerMetadata) -> Self {
        ServerMetadataResponse { name: m.name, version: m.version, extensions: m.extensions }
    }
}

/// REST metadata in gRPC form; `parameters` (labels, namespace, digest) have no gRPC field.
impl From<v2::ModelMetadata> for ModelMetadataResponse {
    fn from(m: v2::ModelMetadata) -> Self {
        let tensor =
            |t: v2::MetadataTensor| TensorMetadata { name: t.name, datatype: t.datatype, shape: t.shape };
        ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: m.inputs.into_iter().map(tensor).collect(),
            outputs: m.outputs.into_iter().map(tensor).collect(),
        }
    }
}
