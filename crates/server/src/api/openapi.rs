//! The OpenAPI 3 document: the server's endpoints and, for every served model, its typed
//! inference request and response with a ready-to-run example.

use palisade_core::{DataType, Dim, TensorSpec};
use serde_json::{Map, Value, json};

use crate::{Registry, Security, ServedModel};

/// Builds the document for the models being served.
pub(crate) fn document(registry: &Registry, security: &Security) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut tags = vec![
        json!({"name": "server", "description": "Server metadata and health probes. Health probes are public by design."}),
    ];

    paths.insert("/v2".into(), get_op("server", "Server metadata", "ServerMetadata"));
    paths.insert("/v2/health/live".into(), probe("Liveness: the process is up", "live"));
    paths.insert("/v2/health/ready".into(), probe("Readiness: every model is loaded", "ready"));
    let mut alive = probe("Liveness for KServe V1 clients: the process is up", "status");
    alive["get"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["status"] =
        json!({"type": "string", "enum": ["alive"]});
    paths.insert("/".into(), alive);

    for served in registry.latest() {
        let name = served.id.name.as_str();
        let versions: Vec<String> =
            registry.versions(&served.id.name).into_iter().map(String::from).collect();
        tags.push(json!({
            "name": name,
            "description": served.description.clone().unwrap_or_else(|| format!("Model {name}, namespace {}", served.id.namespace)),
        }));
        add_model_schemas(&mut schemas, served, &versions);
        let infer = infer_op(served, None);
        paths.insert(
            format!("/v2/models/{name}"),
            get_op(name, &format!("Metadata of {name} (latest version)"), "ModelMetadata"),
        );
        paths
            .insert(format!("/v2/models/{name}/ready"), probe_for(name, &format!("Whether {name} is ready")));
        paths.insert(format!("/v2/models/{name}/infer"), infer);
        paths.insert(
            format!("/v2/models/{name}/versions/{{version}}/infer"),
            infer_op(served, Some(&versions)),
        );
        paths.insert(format!("/v1/models/{name}"), kserve_ready_op(name));
        if served.model.graph().is_some() {
            paths.insert(format!("/v2/models/{name}/feedback"), feedback_op(name));
        }
        if served.explainer.is_some() {
            paths.insert(format!("/v2/models/{name}/explain"), explain_op(served));
        }
        if served.monitor.as_ref().is_some_and(|m| m.tests_drift()) {
            paths.insert(format!("/v2/models/{name}/drift"), drift_op(name));
        }
        if served.model.signature().inputs.len() == 1 {
            paths.insert(
                format!("/seldon/{}/{name}/api/v1.0/predictions", served.id.namespace),
                seldon_op(served),
            );
            if served.id.namespace == palisade_core::Namespace::default() {
                let mut short = seldon_op(served);
                short["post"]["operationId"] = json!(format!("seldon_default_{}", sanitize(name)));
                paths.insert(format!("/seldon/{name}/api/v1.0/predictions"), short);
            }
            if let Some(op) = kserve_predict_op(served) {
                paths.insert(format!("/v1/models/{name}:predict"), op);
            }
        }
    }

    schemas.insert(
        "Error".into(),
        json!({
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What went wrong"}},
        }),
    );
    schemas.insert(
        "OAuthError".into(),
        json!({
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string", "description": "RFC 6749 error code"}, "error_description": {"type": "string"}},
        }),
    );
    schemas.insert(
        "SeldonStatus".into(),
        json!({
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "object", "properties": {
                "code": {"type": "integer"}, "info": {"type": "string"}, "reason": {"type": "string"}, "status": {"type": "string", "enum": ["FAILURE"]},
            }}},
        }),
    );
    schemas.insert("ServerMetadata".into(), json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array", "items": {"type": "string"}}},
    }));
    schemas.insert("MetadataTensor".into(), json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}}},
    }));
    schemas.insert(
        "ModelMetadata".into(),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/MetadataTensor"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/MetadataTensor"}},
            },
        }),
    );

    if let Some(issuer) = security.issuer() {
        paths.insert("/oauth/token".into(), token_op(&issuer.settings().issuer));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Palisade model APIs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Models served over the Open Inference Protocol V2 (KServe, Triton, MLServer) and the Seldon v1 protocol.",
        },
        "tags": tags,
        "paths": paths,
        "security": [{"bearerAuth": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A token from your organisation's identity provider, or a service-account token from POST /oauth/token.",
            }},
        },
    })
}

fn token_op(issuer: &str) -> Value {
    json!({"post": {
        "tags": ["server"],
        "summary": "Get a service-account token (OAuth2 client credentials)",
        "description": format!("Tokens are issued by {issuer}. Authenticate with HTTP Basic (client id and secret) or form fields."),
        "security": [],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "client_id": {"type": "string"}, "client_secret": {"type": "string", "format": "password"},
            },
        }}}},
        "responses": {
            "200": {"description": "A bearer token", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "access_token": {"type": "string"}, "token_type": {"type": "string"}, "expires_in": {"type": "integer"},
            }}}}},
            "400": {"description": "Unsupported grant type or malformed request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
            "401": {"description": "Unknown client, wrong secret, or revoked", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
            "413": {"description": "Request body too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
            "429": {"description": "Too many failed attempts for this client or from this address; retry after `Retry-After` seconds", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
            "503": {"description": "The audit log cannot be written, or too much request data in flight; retry later", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
        },
    }})
}

fn error_responses() -> Value {
    let err = json!({"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut out = Map::new();
    for (code, text) in [
        ("400", "Malformed request or tensor"),
        ("401", "No valid token"),
        ("403", "Token not accepted here (audience) or access denied by policy"),
        ("404", "Unknown model or version"),
        ("413", "Request body too large"),
        (
            "429",
            "Server overloaded, or this caller has used its rate budget for the model (`limits.rate`); retry after `Retry-After` seconds",
        ),
        ("500", "Inference failed"),
        ("503", "Too much request data in flight, or the audit log cannot be written; retry later"),
        ("504", "Inference timed out"),
    ] {
        let mut e = err.clone();
        e["description"] = json!(text);
        out.insert(code.into(), e);
    }
    Value::Object(out)
}

/// `POST /v2/models/{graph}/feedback`: a reward for one of the graph's requests.
fn feedback_op(name: &str) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Rewarded: the routes the request took, as the server remembers them", "content": {"application/json": {"schema": {
        "type": "object", "required": ["request_id", "rewarded", "routing"],
        "properties": {
            "request_id": {"type": "string"},
            "rewarded": {"type": "integer", "description": "Bandits rewarded"},
            "routing": {"type": "object", "description": "Router node to the child it chose"},
        },
    }}}});
    json!({"post": {
        "tags": [name],
        "summary": format!("Reward one of {name}'s requests (its caller or the graph's owners only)"),
        "operationId": format!("feedback_{}", sanitize(name)),
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "required": ["request_id", "reward"],
            "properties": {
                "request_id": {"type": "string", "description": "The x-request-id of the answer"},
                "reward": {"type": "number"},
            },
        }}}},
        "responses": responses,
    }})
}

/// `POST /v2/models/{name}/explain` for a model with an explainer: the infer body, and
/// Alibi's `Explanation` back (docs/explain.md).
fn explain_op(served: &ServedModel) -> Value {
    let name = served.id.name.as_str();
    let number_rows = json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}});
    let mut responses = error_responses();
    responses["200"] = json!({"description": "SHAP values of the model's answers, as Alibi's Explanation", "content": {"application/json": {"schema": {
        "type": "object", "required": ["meta", "data"],
        "properties": {
            "meta": {"type": "object", "description": "The explainer (`name`: TreeShap or KernelShap) and its parameters"},
            "data": {"type": "object", "required": ["shap_values", "expected_value"], "properties": {
                "shap_values": {"type": "array", "description": "One matrix per output class (one for a regressor): rows x features", "items": number_rows},
                "expected_value": {"type": "array", "items": {"type": "number"}, "description": "Per output class: the value the SHAP values of a row add to"},
                "feature_names": {"type": "array", "items": {"type": "string"}},
                "raw": {"type": "object", "description": "The model's answers on the rows explained"},
            }},
        },
    }}}});
    json!({"post": {
        "tags": [name],
        "summary": format!("Explain {name}'s answers (SHAP values; authorized on this path of its own)"),
        "operationId": format!("explain_{}", sanitize(name)),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{}", schema_key(served, "InferenceRequest"))},
            "example": example_request(served),
        }}},
        "responses": responses,
    }})
}

/// `GET /v2/models/{name}/drift` for a model with `monitoring.drift` (docs/monitoring.md).
fn drift_op(name: &str) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Per feature, the Kolmogorov-Smirnov test of the recent inputs against the reference", "content": {"application/json": {"schema": {
        "type": "object", "required": ["model_name", "model_version", "alpha", "window", "window_rows", "drift", "features"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "test": {"type": "string", "enum": ["ks_2samp"]},
            "correction": {"type": "string", "enum": ["bonferroni"]},
            "alpha": {"type": "number"},
            "window": {"type": "integer", "description": "Most rows the window keeps"},
            "window_rows": {"type": "integer", "description": "Rows in the window now"},
            "drift": {"type": "boolean", "description": "Whether any feature drifted"},
            "features": {"type": "array", "items": {"type": "object", "required": ["name", "statistic", "p_value", "corrected_p_value", "drift"], "properties": {
                "name": {"type": "string"},
                "statistic": {"type": "number"},
                "p_value": {"type": "number"},
                "corrected_p_value": {"type": "number", "description": "min(1, p_value x features)"},
                "drift": {"type": "boolean"},
                "window_values": {"type": "integer"},
            }}},
        },
    }}}});
    json!({"get": {
        "tags": [name],
        "summary": format!("Drift of {name}'s recent inputs (authorized on this path of its own)"),
        "operationId": format!("drift_{}", sanitize(name)),
        "responses": responses,
    }})
}

fn get_op(tag: &str, summary: &str, schema: &str) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    json!({"get": {"tags": [tag], "summary": summary, "responses": responses}})
}

fn probe(summary: &str, field: &str) -> Value {
    let mut op = probe_for("server", summary);
    let body = |value: bool| {
        json!({"application/json": {"schema": {
            "type": "object", "required": [field],
            "properties": {field: {"type": "boolean", "enum": [value]}},
        }}})
    };
    op["get"]["responses"]["200"]["content"] = body(true);
    if field == "ready" {
        op["get"]["responses"]["503"]["content"] = body(false);
    } else if let Some(responses) = op["get"]["responses"].as_object_mut() {
        responses.remove("503");
    }
    op
}

fn probe_for(tag: &str, summary: &str) -> Value {
    let public = tag == "server";
    let mut op = if public {
        json!({"tags": [tag], "summary": summary, "security": [], "responses": {
            "200": {"description": "Yes"},
            "503": {"description": "No"},
        }})
    } else {
        let mut responses = error_responses();
        responses["200"] = json!({"description": "Yes"});
        responses["503"] = json!({"description": "Not ready (an upstream model whose server says so)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        json!({"tags": [tag], "summary": summary, "responses": responses})
    };
    op["description"] = json!(if public {
        "Public by design, so orchestrators can probe without a token. Not audited."
    } else {
        "Answered after authentication and authorization, like every model endpoint."
    });
    json!({"get": op})
}

fn schema_key(served: &ServedModel, suffix: &str) -> String {
    format!("{}.{suffix}", served.id.name)
}

/// One element of a tensor of this datatype, within the values the datatype holds.
fn datatype_item(dt: DataType) -> Value {
    match dt {
        DataType::Bool => json!({"type": "boolean"}),
        DataType::Bytes => json!({"type": "string"}),
        // Bounds are where a value would round to infinity (refused): the largest finite
        // value of the type plus half its last step.
        DataType::Fp16 => float_range(65520.0),
        DataType::Fp32 => float_range(3.4028235677973366e38),
        DataType::Bf16 => float_range(3.39617752923046e38),
        DataType::Fp64 => json!({"type": "number"}),
        DataType::Int8 => json!({"type": "integer", "minimum": i8::MIN, "maximum": i8::MAX}),
        DataType::Int16 => json!({"type": "integer", "minimum": i16::MIN, "maximum": i16::MAX}),
        DataType::Int32 => json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        DataType::Uint8 => json!({"type": "integer", "minimum": 0, "maximum": u8::MAX}),
        DataType::Uint16 => json!({"type": "integer", "minimum": 0, "maximum": u16::MAX}),
        DataType::Uint32 => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        DataType::Uint64 => json!({"type": "integer", "minimum": 0}),
        _ => json!({"type": "integer"}),
    }
}

fn float_range(limit: f64) -> Value {
    json!({"type": "number", "minimum": -limit, "exclusiveMinimum": true, "maximum": limit, "exclusiveMaximum": true})
}

/// A tensor in a request (`with_data`) or a response. JSON Schema cannot say that `data`
/// holds as many elements as `shape` multiplies to, nor which sizes the model fixes; the
/// description says so, and a request that breaks either is answered 400.
fn tensor_schema(spec: &TensorSpec, with_data: bool, element_ref: &str) -> Value {
    let rank = spec.shape.len();
    let mut properties = json!({
        "name": {"type": "string", "enum": [spec.name]},
        "datatype": {"type": "string", "enum": [spec.datatype.as_str()]},
        "shape": {
            "type": "array", "minItems": rank, "maxItems": rank,
            "items": {"type": "integer", "minimum": 0, "maximum": i32::MAX},
            "description": format!("Model shape {:?} (-1: any size); `data` holds as many elements as the shape multiplies to", spec.shape_i64()),
        },
        "parameters": {"type": "object", "nullable": true},
    });
    properties["data"] = json!({
        "type": "array",
        "description": "Elements in row-major order, flat or nested",
        "items": {"$ref": element_ref},
    });
    let mut required = vec!["name", "shape", "datatype"];
    if with_data {
        required.push("data");
    }
    let mut schema = json!({"type": "object", "required": required, "properties": properties});
    if with_data {
        schema["additionalProperties"] = json!(false);
    }
    if let Some(labels) = &spec.labels {
        schema["description"] = json!(format!("Columns are classes {}", labels.join(", ")));
    }
    schema
}

/// The schema of one item of a tensor's `data`: an element, or an array of items (data may
/// be nested to any depth), registered as a component so it can refer to itself.
fn element_schema(
    schemas: &mut Map<String, Value>,
    served: &ServedModel,
    tensor: &str,
    spec: &TensorSpec,
) -> String {
    let key = schema_key(served, &format!("{tensor}.element"));
    let reference = format!("#/components/schemas/{key}");
    schemas.insert(
        key,
        json!({"oneOf": [datatype_item(spec.datatype), {"type": "array", "items": {"$ref": reference}}]}),
    );
    reference
}

fn add_model_schemas(schemas: &mut Map<String, Value>, served: &ServedModel, versions: &[String]) {
    let signature = served.model.signature();
    let input_refs: Vec<Value> = signature
        .inputs
        .iter()
        .map(|spec| {
            let key = schema_key(served, &format!("input.{}", sanitize(&spec.name)));
            let element = element_schema(schemas, served, &format!("input.{}", sanitize(&spec.name)), spec);
            schemas.insert(key.clone(), tensor_schema(spec, true, &element));
            json!({"$ref": format!("#/components/schemas/{key}")})
        })
        .collect();
    let output_refs: Vec<Value> = signature
        .outputs
        .iter()
        .map(|spec| {
            let key = schema_key(served, &format!("output.{}", sanitize(&spec.name)));
            let element = element_schema(schemas, served, &format!("output.{}", sanitize(&spec.name)), spec);
            schemas.insert(key.clone(), tensor_schema(spec, false, &element));
            json!({"$ref": format!("#/components/schemas/{key}")})
        })
        .collect();
    let one_of = |refs: Vec<Value>| {
        if refs.len() == 1 { refs.into_iter().next().unwrap_or(Value::Null) } else { json!({"oneOf": refs}) }
    };
    let output_names: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
    let input_count = signature.inputs.len();
    let mut version_enum: Vec<Value> = versions.iter().map(|v| json!(v)).collect();
    version_enum.extend([json!(""), Value::Null]);
    schemas.insert(
        schema_key(served, "InferenceRequest"),
        json!({
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "nullable": true, "description": "Echoed in the response"},
                "model_name": {"type": "string", "nullable": true, "enum": [served.id.name.as_str(), null], "description": "Optional (KServe's and Triton's clients send it): when present, the model of the path, or 400. The path chooses the model."},
                "model_version": {"type": "string", "nullable": true, "enum": version_enum, "description": "Optional: when present and not empty, the version the path serves (the latest when the path names none), or 400."},
                "parameters": {"type": "object", "nullable": true},
                "inputs": {"type": "array", "minItems": 1, "maxItems": input_count, "items": one_of(input_refs), "description": "Each of the model's inputs, once"},
                "outputs": {"type": "array", "nullable": true, "maxItems": output_names.len(), "description": "Outputs to return, each once (default: all)", "items": {
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {"name": {"type": "string", "enum": output_names}, "parameters": {"type": "object", "nullable": true}},
                }},
            },
        }),
    );
    schemas.insert(
        schema_key(served, "InferenceResponse"),
        json!({
            "type": "object",
            "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": one_of(output_refs)},
            },
        }),
    );
}

/// Component names allow `[A-Za-z0-9._-]` only.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect()
}

/// A valid example request: one row (dynamic dims of size 1) of placeholder values.
fn example_request(served: &ServedModel) -> Value {
    let inputs: Vec<Value> = served
        .model
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<u64> = spec.shape.iter().map(|d| match d { Dim::Fixed(n) => *n, Dim::Dynamic => 1 }).collect();
            let count = shape.iter().product::<u64>().min(4096) as usize;
            let value = match spec.datatype {
                DataType::Bool => json!(false),
                DataType::Bytes => json!("text"),
                dt if dt.is_float() => json!(1.0),
                _ => json!(1),
            };
            json!({"name": spec.name, "shape": shape, "datatype": spec.datatype.as_str(), "data": vec![value; count]})
        })
        .collect();
    json!({"inputs": inputs})
}

fn infer_op(served: &ServedModel, versions: Option<&[String]>) -> Value {
    let name = served.id.name.as_str();
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Predictions", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_key(served, "InferenceResponse"))}}}});
    let mut op = json!({
        "tags": [name],
        "summary": match versions { None => format!("Predict with {name} (latest version)"), Some(_) => format!("Predict with a version of {name}") },
        "operationId": match versions { None => format!("infer_{}", sanitize(name)), Some(_) => format!("infer_{}_version", sanitize(name)) },
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{}", schema_key(served, "InferenceRequest"))},
            "example": example_request(served),
        }}},
        "responses": responses,
    });
    if let Some(versions) = versions {
        op["parameters"] = json!([{
            "name": "version", "in": "path", "required": true,
            "schema": {"type": "string", "enum": versions, "default": served.id.version.as_str()},
        }]);
    }
    json!({"post": op})
}

fn kserve_ready_op(name: &str) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Ready", "content": {"application/json": {"schema": {
        "type": "object", "required": ["name", "ready"],
        "properties": {"name": {"type": "string", "enum": [name]}, "ready": {"type": "boolean"}},
    }}}});
    responses["503"] = json!({"description": "Not ready (an upstream model whose server says so)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"get": {
        "tags": [name],
        "summary": format!("Whether {name} is ready (KServe V1 protocol)"),
        "operationId": format!("kserve_ready_{}", sanitize(name)),
        "responses": responses,
    }})
}

/// `:predict` for a model whose one input is a batch of fixed-width rows (rank 2), the
/// form JSON Schema can state exactly.
fn kserve_predict_op(served: &ServedModel) -> Option<Value> {
    let name = served.id.name.as_str();
    let input = served.model.signature().inputs.first().filter(|i| i.shape.len() == 2)?;
    let Some(Dim::Fixed(columns)) = input.shape.last() else { return None };
    let row = json!({"type": "array", "minItems": columns, "maxItems": columns, "items": datatype_item(input.datatype)});
    let rows = json!({"type": "array", "minItems": 1, "items": row});
    let example_row = example_request(served)["inputs"][0]["data"].clone();
    let mut responses = error_responses();
    responses["200"] = json!({"description": "One prediction per row: the output's row, or an object keyed by output name when the model has several outputs", "content": {"application/json": {"schema": {
        "type": "object", "required": ["predictions"],
        "properties": {"predictions": {"type": "array"}},
    }}}});
    Some(json!({"post": {
        "tags": [name],
        "summary": format!("Predict with {name} (KServe V1 protocol)"),
        "operationId": format!("kserve_predict_{}", sanitize(name)),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"oneOf": [
                {"type": "object", "required": ["instances"], "additionalProperties": false, "properties": {"instances": rows}},
                {"type": "object", "required": ["inputs"], "additionalProperties": false, "properties": {"inputs": rows}},
            ]},
            "example": {"instances": [example_row]},
        }}},
        "responses": responses,
    }}))
}

fn seldon_op(served: &ServedModel) -> Value {
    let name = served.id.name.as_str();
    let example = example_request(served);
    let example_row = example["inputs"][0]["data"].clone();
    let input = served.model.signature().inputs.first();
    let element = input.map_or(json!({}), |i| datatype_item(i.datatype));
    let mut row = json!({"type": "array", "minItems": 1, "items": element});
    if let Some(Dim::Fixed(columns)) = input.filter(|i| i.shape.len() == 2).and_then(|i| i.shape.last()) {
        row["minItems"] = json!(columns);
        row["maxItems"] = json!(columns);
    }
    let names = json!({"type": "array", "items": {"type": "string"}});
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "Predictions, in the form of the request", "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    for (code, text) in [
        ("400", "Malformed request or tensor"),
        ("401", "No valid token"),
        ("403", "Token not accepted here (audience) or access denied by policy"),
        ("404", "Unknown model"),
        ("413", "Request body too large"),
        (
            "429",
            "Server overloaded, or this caller has used its rate budget for the model (`limits.rate`); retry after `Retry-After` seconds",
        ),
        ("500", "Inference failed"),
        ("503", "Too much request data in flight, or the audit log cannot be written; retry later"),
        ("504", "Inference timed out"),
    ] {
        responses.insert(
            code.into(),
            json!({"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SeldonStatus"}}}}),
        );
    }
    json!({"post": {
        "tags": [name],
        "summary": format!("Predict with {name} (Seldon Core v1 protocol)"),
        "operationId": format!("seldon_{}", sanitize(name)),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"type": "object", "required": ["data"], "additionalProperties": false, "properties": {
                "meta": {"type": "object", "nullable": true},
                "data": {"oneOf": [
                    {"type": "object", "required": ["ndarray"], "additionalProperties": false, "properties": {
                        "names": names,
                        "ndarray": {"type": "array", "minItems": 1, "items": row},
                    }},
                    {"type": "object", "required": ["tensor"], "additionalProperties": false, "properties": {
                        "names": names,
                        "tensor": {"type": "object", "required": ["shape", "values"], "additionalProperties": false, "properties": {
                            "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": i32::MAX}, "description": "`values` holds as many elements as the shape multiplies to"},
                            "values": {"type": "array", "items": element},
                        }},
                    }},
                ]},
            }},
            "example": {"data": {"ndarray": [example_row]}},
        }}},
        "responses": responses,
    }})
}
